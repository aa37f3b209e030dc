"""The convolution engine's plans (nbconv.conv.convplan) and the named ``"auto"`` rules
(nbconv.conv.plan.AUTO_RULES): exactly one rule per layer, plans that say what runs, cached,
shown by ``nbconv.conv.explain``."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference_conv import ref_conv2d

import nbconv as nc
from nbconv._checks.conv import Geom
from nbconv.conv import ConvPlan, convplan, explain
from nbconv.conv import plan as _plan


@st.composite
def cases(draw):
    """Any layer the rules may see: channels, filters, kernel, groups, stride, dilation,
    output size and pass."""
    groups = draw(st.sampled_from(["1", "depthwise", "2", "4"]))
    C = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 24, 32, 48, 63, 64, 96, 97, 128, 192, 512]))
    F = draw(st.sampled_from([1, 6, 16, 31, 32, 64, 127, 128, 256, 512]))
    g = {"1": 1, "depthwise": C, "2": 2, "4": 4}[groups]
    if C % g or F % g:
        g = 1
    kh, kw = draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (5, 5), (7, 7), (3, 1), (1, 5)]))
    s = draw(st.integers(1, 4))
    d = draw(st.integers(1, 2))
    OH, OW = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    geo = Geom(s, draw(st.sampled_from([s, 1])), d, d, g, 0, 0, 0, 0, "zeros", OH, OW)
    return _plan.case_of(C, kh, kw, geo, F, backward=draw(st.booleans()))


@given(cases())
def test_exactly_one_auto_rule_applies(case):
    matching = [rule.name for rule in _plan.AUTO_RULES if rule.applies(case)]
    assert len(matching) == 1, (case, matching)


def test_every_auto_rule_is_reachable_and_named_once():
    names = [rule.name for rule in _plan.AUTO_RULES]
    assert len(set(names)) == len(names)
    seen = set()
    for C, F, k, s, OH, groups, backward in np.ndindex(5, 4, 3, 2, 5, 3, 2):
        C, F = (3, 8, 16, 64, 512)[C], (8, 32, 128, 512)[F]
        k, s, OH = (1, 3, 5)[k], s + 1, (1, 4, 5, 8, 32)[OH]
        groups = (1, C, 2 if C % 2 == 0 else 1)[groups]
        geo = Geom(s, s, 1, 1, groups, 0, 0, 0, 0, "zeros", OH, OH)
        seen.add(_plan.auto_rule(_plan.case_of(C, k, k, geo, F, bool(backward))).name)
    assert seen == set(names)


def test_explain_names_rule_algorithm_kernels_and_prints_them():
    plans = explain((32, 3, 32, 32), (64, 3, 3, 3), padding=1)
    fwd, bwd = plans.forward, plans.backward
    assert isinstance(fwd, ConvPlan) and fwd.pass_name == "forward"
    assert bwd.pass_name == "backward" and len(bwd.kernels) == 2
    assert fwd.algorithm == "direct" and fwd.rule == "direct-kernels"
    assert fwd.kernels[0] in ("pixvec", "regblock", "wide")
    text = str(plans)
    assert "auto rule direct-kernels" in text and "implicit zeros" in text
    assert text.count("x (32, 3, 32, 32)") == 2


def test_explain_shows_requested_trimmed_and_explicit_padding():
    p = explain((2, 16, 1, 1), (8, 16, 3, 3), padding=1, algorithm="im2col").forward
    assert p.rule == "requested" and p.algorithm == "im2col"
    assert p.taps == (1, 2, 1, 2) and p.geometry.pt == 0  # a 1x1 layer: the centre tap
    assert "rows 1:2 of 3" in str(p)
    q = explain((2, 4, 9, 9), (8, 4, 3, 3), padding=2, padding_mode="circular").forward
    assert q.padding == "explicit circular" and q.taps is None


def test_plans_are_cached_by_shape_and_thread_count():
    a = explain((8, 16, 12, 12), (16, 16, 3, 3), padding=1).forward
    b = explain((8, 16, 12, 12), (16, 16, 3, 3), padding=1).forward
    assert a is b
    c = explain((9, 16, 12, 12), (16, 16, 3, 3), padding=1).forward
    assert c is not a and c.x_shape[0] == 9
    with pytest.raises(AttributeError):
        a.algorithm = "im2col"  # immutable
    convplan.clear_cache()
    assert explain((8, 16, 12, 12), (16, 16, 3, 3), padding=1).forward == a


@pytest.mark.parametrize("bad, err, words", [
    (dict(x_shape=(3, 8)), ValueError, "x_shape"),
    (dict(x_shape="abc"), TypeError, "x_shape"),
    (dict(weight_shape=(4, 3, 3)), ValueError, "weight_shape"),
    (dict(weight_shape=(4, 2, 3, 3)), ValueError, "channels"),
    (dict(dtype="float16"), TypeError, "dtype"),
    (dict(algorithm="fast"), ValueError, "algorithm"),
    (dict(algorithm="winograd", stride=2), ValueError, "winograd"),
    (dict(padding=-1), ValueError, "padding"),
])
def test_explain_refuses_what_conv2d_refuses(bad, err, words):
    args = dict(x_shape=(1, 3, 8, 8), weight_shape=(4, 3, 3, 3))
    args.update(bad)
    with pytest.raises(err, match=words):
        explain(args.pop("x_shape"), args.pop("weight_shape"), **args)


def test_unbatched_shape_is_one_image():
    assert explain((3, 8, 8), (4, 3, 3, 3)).forward.x_shape == (1, 3, 8, 8)


@pytest.mark.parametrize("shape_x, shape_w, kw", [
    ((4, 32, 16, 16), (32, 32, 3, 3), dict(padding=1)),              # winograd-3x3
    ((4, 16, 8, 8), (32, 16, 3, 3), dict(padding=1)),                # small-maps
    ((4, 3, 12, 12), (8, 3, 5, 5), dict(padding=2)),                 # direct-kernels
    ((4, 8, 12, 12), (8, 1, 3, 3), dict(padding=1, groups=8)),       # depthwise
    ((4, 16, 12, 12), (32, 16, 1, 1), dict()),                       # pointwise im2col
    ((4, 4, 13, 13), (8, 4, 3, 3), dict(stride=2, padding=1)),       # strided direct
])
def test_the_planned_path_computes_the_convolution(shape_x, shape_w, kw):
    """Every plan above runs, and its result is the reference's (float64)."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(shape_x), rng.standard_normal(shape_w)
    plans = explain(shape_x, shape_w, dtype=np.float64, **kw)
    assert plans.forward.rule in {r.name for r in _plan.AUTO_RULES}
    y = nc.conv2d(x, w, **kw)
    np.testing.assert_allclose(y, ref_conv2d(x, w, **kw), rtol=1e-10, atol=1e-10)


def test_winograd_leaves_non_finite_inputs_to_the_engine():
    """No sideways fallback in the driver: Winograd refuses an inf and the engine's exact
    pass computes the definition (the inf reaches only the windows that hold it)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 32, 10, 10))
    w = rng.standard_normal((32, 32, 3, 3))
    x[0, 3, 4, 4] = np.inf
    assert explain(x.shape, w.shape, padding=1, dtype=x.dtype).forward.algorithm == "winograd"
    y = nc.conv2d(x, w, padding=1, algorithm="winograd")
    want = ref_conv2d(np.where(np.isinf(x), 0, x), w, padding=1)
    hit = np.zeros(y.shape, bool)
    hit[0, :, 3:6, 3:6] = True
    np.testing.assert_allclose(y[~hit], want[~hit], rtol=1e-10, atol=1e-10)
    assert not np.isfinite(y[hit]).any()
