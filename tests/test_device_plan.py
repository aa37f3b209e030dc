"""The plans of CUDA device arrays (``device="cuda"``, nbconv.conv.convplan) and the device rule
(nbconv.conv.plan.DEVICE_RULES): exactly one rule per layer, plans that name the rule and the
CUDA kernels, cached apart from the host's, shown by ``explain(..., device="cuda")`` on a
machine without a GPU.  The device kernels themselves are tested in tests/cuda/."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbconv
from nbconv.conv import convplan, explain
from nbconv.conv import plan as _plan

KERNELS = pathlib.Path(nbconv.__file__).parent / "cuda" / "kernels"


@st.composite
def device_cases(draw):
    """Any layer the device rule may see, up to and past the grid's 65535 groups."""
    groups = draw(st.sampled_from([1, 2, 4, 32, 65535, 65536, 100000]))
    Cg = draw(st.sampled_from([1, 2, 3, 7, 8, 9, 16, 64]))
    Fg = draw(st.sampled_from([1, 2, 7, 8, 9, 64]))
    kh, kw = draw(st.sampled_from([(1, 1), (1, 3), (2, 2), (3, 3), (5, 5), (1, 4), (4, 1)]))
    return _plan.DeviceCase(Fg * groups, Cg, kh, kw, groups)


@given(device_cases())
def test_exactly_one_device_rule_applies(case):
    matching = [rule.name for rule in _plan.DEVICE_RULES if rule.applies(case)]
    assert len(matching) == 1, (case, matching)


def test_device_rules_named_once_reachable_and_pick_device_algorithms():
    names = [rule.name for rule in _plan.DEVICE_RULES]
    assert len(set(names)) == len(names)
    assert {rule.algorithm for rule in _plan.DEVICE_RULES} == set(_plan.DEVICE_ALGORITHMS)
    seen = {_plan.device_rule(_plan.DeviceCase(F, Cg, k, k, 1)).name
            for F in (4, 8, 64) for Cg in (3, 8, 64) for k in (1, 3)}
    assert seen == set(names)


@pytest.mark.parametrize("x_shape, w_shape, kw, algorithm, rule", [
    ((8, 128, 56, 56), (128, 128, 3, 3), dict(padding=1), "implicit-gemm", "device-tiled"),
    ((16, 256, 56, 56), (64, 256, 1, 1), {}, "implicit-gemm", "device-tiled"),  # 1x1, C >= 32
    ((8, 64, 27, 27), (192, 64, 5, 5), dict(padding=2), "implicit-gemm", "device-tiled"),
    ((8, 3, 224, 224), (64, 3, 3, 3), dict(padding=1), "direct", "device-direct"),  # 3 channels
    ((8, 6, 14, 14), (16, 6, 5, 5), {}, "direct", "device-direct"),  # LeNet's c3: 6 channels
    ((8, 64, 56, 56), (64, 1, 3, 3), dict(padding=1, groups=64), "direct", "device-direct"),
    ((8, 16, 8, 8), (16, 16, 1, 1), {}, "direct", "device-direct"),  # 16 terms < 32
])
def test_device_rule_of_known_layers(x_shape, w_shape, kw, algorithm, rule):
    """The rule's thresholds (8 channels per group, 32 terms) on layers of the zoo, both
    passes alike."""
    plans = explain(x_shape, w_shape, device="cuda", **kw)
    for p in (plans.forward, plans.backward):
        assert p.device == "cuda" and p.algorithm == algorithm and p.rule == rule
    assert f"auto rule {rule}" in str(plans)


@pytest.mark.parametrize("algorithm, runs", [("direct", "direct"), ("im2col", "implicit-gemm"),
                                             ("winograd", "implicit-gemm"),
                                             ("tapgemm", "implicit-gemm")])
def test_host_algorithm_names_on_the_device(algorithm, runs):
    """A named algorithm overrides the rule: "direct" forces the direct kernels even where the
    rule would tile, the GEMM-based names the implicit-GEMM kernels even for 3 channels."""
    for x_shape, w_shape in (((2, 64, 9, 9), (64, 64, 3, 3)), ((2, 3, 9, 9), (4, 3, 3, 3))):
        p = explain(x_shape, w_shape, padding=1, algorithm=algorithm, device="cuda").forward
        assert (p.algorithm, p.rule) == (runs, "requested")


def test_more_groups_than_the_grid_holds_run_direct():
    auto = explain((1, 65536 * 8, 2, 2), (65536 * 8, 8, 1, 1), groups=65536, device="cuda")
    assert auto.forward.algorithm == "direct" and auto.forward.rule == "device-direct"
    wide = explain((1, 65535 * 8, 2, 2), (65535 * 8, 8, 2, 2), groups=65535, device="cuda")
    assert wide.forward.algorithm == "implicit-gemm"
    named = explain((1, 65536 * 8, 2, 2), (65536 * 8, 8, 2, 2), groups=65536,
                    algorithm="im2col", device="cuda").backward
    assert named.algorithm == "direct" and named.rule.startswith("requested im2col")
    assert "65535 groups" in named.rule


def _kernel_functions(module):
    tree = ast.parse((KERNELS / f"{module}.py").read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_device_plans_name_cuda_kernels_that_exist(algorithm):
    plans = explain((2, 16, 6, 6), (16, 16, 3, 3), padding=1, algorithm=algorithm,
                    device="cuda")
    assert len(plans.forward.kernels) == 1 and len(plans.backward.kernels) == 2
    for name in plans.forward.kernels + plans.backward.kernels:
        module, function = name.split(".")
        assert function in _kernel_functions(module), name
    fwd = plans.forward.kernels[0]
    assert fwd.endswith("_fwd") and "data " in str(plans.backward)


def test_device_plans_trim_taps_like_the_host_and_rule_on_the_trimmed_kernel():
    """A 3x3 layer on 1x1 maps is a 1x1 layer on the device too: 16 channels make 16 terms,
    below the tiles' 32, so the direct kernels run it although 16*9 = 144 >= 32."""
    host = explain((2, 16, 1, 1), (16, 16, 3, 3), padding=1, algorithm="im2col").forward
    dev = explain((2, 16, 1, 1), (16, 16, 3, 3), padding=1, device="cuda")
    for p in (dev.forward, dev.backward):
        assert p.taps == host.taps == (1, 2, 1, 2)
        assert p.geometry == host.geometry and p.geometry.pt == 0
        assert p.algorithm == "direct" and p.rule == "device-direct"
    assert "rows 1:2 of 3" in str(dev.forward)
    untrimmed = explain((2, 16, 5, 5), (16, 16, 3, 3), padding=1, device="cuda").forward
    assert untrimmed.taps is None and untrimmed.algorithm == "implicit-gemm"


def test_device_explicit_padding_names_the_gather_kernels():
    plans = explain((2, 4, 9, 9), (8, 4, 3, 3), padding=2, padding_mode="circular",
                    device="cuda")
    p = plans.forward
    assert p.padding.startswith("explicit circular") and "_pad_gather" in p.padding
    assert "_pad_fold" in plans.backward.padding and "_pad_fold" not in p.padding
    assert p.taps is None  # trimming needs zero padding
    assert explain((2, 4, 9, 9), (8, 4, 3, 3), padding=1,
                   device="cuda").forward.padding == "implicit zeros"


def test_device_plans_are_cached_apart_from_the_host_plans(monkeypatch):
    args = ((8, 16, 12, 12), (16, 16, 3, 3))
    host = explain(*args, padding=1).forward
    dev = explain(*args, padding=1, device="cuda").forward
    assert dev is not host and (host.device, dev.device) == ("cpu", "cuda")
    assert explain(*args, padding=1, device="cuda").forward is dev
    assert dev.threads == 0
    # the host's thread count is no part of a device plan
    monkeypatch.setattr(convplan.numba, "get_num_threads", lambda: 7)
    assert explain(*args, padding=1, device="cuda").forward is dev


def test_explain_refuses_an_unknown_device():
    with pytest.raises(ValueError, match="argument 'device' must be one of"):
        explain((1, 3, 8, 8), (4, 3, 3, 3), device="gpu")


def test_explain_refuses_on_the_device_what_conv2d_refuses():
    with pytest.raises(ValueError, match="algorithm 'winograd' needs"):
        explain((1, 3, 8, 8), (4, 3, 3, 3), stride=2, algorithm="winograd", device="cuda")
    with pytest.raises(ValueError, match="algorithm 'tapgemm' needs groups 1"):
        explain((1, 4, 8, 8), (4, 2, 3, 3), groups=2, algorithm="tapgemm", device="cuda")


def test_device_explain_needs_no_gpu_and_no_cuda_target():
    """Plans are shapes only: explain(device="cuda") never imports numba's CUDA target."""
    code = ("import sys, nbconv\n"
            "p = nbconv.conv.explain((2, 64, 9, 9), (64, 64, 3, 3), padding=1, device='cuda')\n"
            "assert p.forward.algorithm == 'implicit-gemm', p\n"
            "assert 'numba.cuda' not in sys.modules and 'nbconv.cuda.kernels' not in sys.modules\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_device_case_counts_channels_per_group():
    g = explain((1, 64, 8, 8), (64, 16, 3, 3), groups=4, padding=1).forward.geometry
    case = _plan.device_case(64, 16, 3, 3, g)
    assert case == _plan.DeviceCase(64, 16, 3, 3, 4) and case.fills_tiles()
    assert not _plan.DeviceCase(28, 16, 3, 3, 4).fills_tiles()  # 7 filters a group
    assert not _plan.DeviceCase(64, 3, 3, 3, 1).fills_tiles()  # 27 terms
    assert _plan.DeviceCase(8, 8, 2, 2, 1).fills_tiles()  # 8 and 32: the edges are in
