"""nbconv.tune: every convolution pass of a model timed on this machine, the fastest kept in
a per-machine file that the engine's plans (and later processes) read."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from reference_conv import ref_conv2d

import nbconv as nc
from nbconv import nn
from nbconv.conv import convplan, explain
from nbconv.conv import tune as _tune


@pytest.fixture
def tune_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCONV_TUNE_DIR", str(tmp_path))
    monkeypatch.setattr(_tune, "_table", None)
    yield tmp_path
    monkeypatch.setattr(_tune, "_table", None)
    convplan.clear_cache()


def _small_model():
    nc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 3 * 3, 4))


def test_tune_times_every_pass_and_plans_follow(tune_dir, capsys):
    model = _small_model()
    result = nc.tune(model, (4, 3, 8, 8), budget_s=60, repeats=1)
    out = capsys.readouterr().out
    assert "layer" in out and "stored in" in out
    assert {(r.layer.split(" on")[0], r.pass_name) for r in result.rows} == {
        ("3->8 3x3", "forward"), ("3->8 3x3", "backward"),
        ("8->16 3x3 s2", "forward"), ("8->16 3x3 s2", "backward")}
    for r in result.rows:
        assert r.chosen == min(r.times_ms, key=r.times_ms.get)
        assert r.rule_choice in r.times_ms and {"direct", "im2col"} <= set(r.times_ms)
    data = json.loads(result.file.read_text())
    assert data["machine"] == _tune.machine_key() and len(data["choices"]) == 4
    # the engine's plans take the stored choices
    row = next(r for r in result.rows if r.layer.startswith("8->16") and r.pass_name == "forward")
    p = explain((4, 8, 8, 8), (16, 8, 3, 3), stride=2).forward
    assert p.algorithm == row.chosen and p.rule.startswith("tuned on this machine")
    # and the model still computes what it did
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    conv = model[0]
    want = ref_conv2d(x.astype(np.float64), conv.weight.data.astype(np.float64),
                      conv.bias.data.astype(np.float64), padding=1)
    np.testing.assert_allclose(nc.conv2d(x, conv.weight.data, conv.bias.data, padding=1), want,
                               rtol=1e-4, atol=1e-5)


def test_a_later_process_reads_the_choices(tune_dir):
    nc.tune(_small_model(), (2, 3, 8, 8), budget_s=60, repeats=1, verbose=False)
    code = ("import nbconv; p = nbconv.conv.explain((2, 3, 8, 8), (8, 3, 3, 3), padding=1)"
            ".forward; print(p.rule)")
    env = dict(os.environ, NBCONV_TUNE_DIR=str(tune_dir))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tuned on this machine")


def test_autotune_tunes_new_shapes(tune_dir):
    code = ("import numpy as np, nbconv; x = np.ones((2, 4, 6, 6), np.float32); "
            "w = np.ones((4, 4, 3, 3), np.float32); nbconv.conv2d(x, w); "
            "print(nbconv.conv.explain(x.shape, w.shape).forward.rule)")
    env = dict(os.environ, NBCONV_TUNE_DIR=str(tune_dir), NBCONV_AUTOTUNE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tuned on this machine")
    files = list((tune_dir / "nbconv-tuned").glob("*.json"))
    choices = json.loads(files[0].read_text())["choices"]
    # the forward pass when conv2d first ran it, the backward one when explain planned it
    assert len(files) == 1 and sorted(json.loads(k)[0] for k in choices) == ["backward",
                                                                             "forward"]


def test_an_unreadable_file_leaves_the_rules(tune_dir):
    path = _tune.tune_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    p = explain((2, 3, 8, 8), (8, 3, 3, 3), padding=1).forward
    assert not p.rule.startswith("tuned")
    # another machine's file (same name by chance) is ignored too
    path.write_text(json.dumps({"machine": "another", "choices": {"x": {"algorithm": "im2col"}}}))
    _tune._table = None
    assert _tune.tuned_algorithm("forward", (2, 3, 8, 8), (8, 3, 3, 3), p.geometry,
                                 "float32") is None


def test_the_budget_bounds_the_work(tune_dir):
    result = nc.tune(_small_model(), (2, 3, 8, 8), budget_s=1e-6, verbose=False)
    assert len(result.rows) <= 1  # the first pass may start; nothing after the deadline


@pytest.mark.parametrize("args, err, words", [
    (("model", (1, 3, 8, 8)), TypeError, "model"),
    ((None, "shape"), TypeError, "model"),
    ((nn.ReLU(), (0, 3)), ValueError, "input_shape"),
    ((nn.ReLU(), ("a", 3)), TypeError, "input_shape"),
])
def test_bad_arguments(args, err, words, tune_dir):
    with pytest.raises(err, match=words):
        nc.tune(*args)
    with pytest.raises(ValueError, match="budget_s"):
        nc.tune(nn.ReLU(), (1, 3), budget_s=0)
    with pytest.raises(TypeError, match="dtype"):
        nc.tune(nn.ReLU(), (1, 3), dtype=np.int32)
