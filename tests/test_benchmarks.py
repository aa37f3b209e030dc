"""Smoke tests of the benchmark scripts: they run (tiny sizes, --quick) and write the JSON keys
that downstream tools read.  No assertion depends on a timing value."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def _run(script, *args, timeout=300):
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=BENCH.parent)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_bench_conv_quick(tmp_path):
    js, png = tmp_path / "conv.json", tmp_path / "conv.png"
    out = _run("bench_conv.py", "--quick", "--layers", "lenet_c1", "--threads", "1",
               "--json", str(js), "--png", str(png))
    assert "conv2d forward" in out and "conv2d backward" in out
    data = json.loads(js.read_text())
    assert {"benchmark", "machine", "protocol", "targets", "layers", "summary"} <= set(data)
    assert data["quick"] is True
    assert data["summary"]["wrong_results"] == []
    assert data["machine"]["nbconv_threads"] == 1
    (layer,) = data["layers"]
    assert layer["name"] == "lenet_c1"
    assert layer["shape"] == dict(N=64, C=1, F=6, H=28, W=28, k=5, stride=1, pad=0, groups=1,
                                  OH=24, OW=24)
    assert layer["gflop_forward"] == pytest.approx(2 * 64 * 6 * 24 * 24 * 25 / 1e9)
    expected = {"direct", "im2col", "auto", "numpy"} | ({"torch"} if HAVE_TORCH else set())
    for key in ("forward", "backward"):
        assert expected <= set(layer[key])
        for c in expected:
            e = layer[key][c]
            assert {"ms", "gflops", "repeats", "check_ok"} <= set(e)
            assert e["ms"] > 0 and e["repeats"] >= 3 and e["check_ok"]
            if HAVE_TORCH and c != "torch":
                assert e["ratio"] > 0
        if HAVE_TORCH:
            assert {"target_ratio", "auto_meets_target"} <= set(layer[key])
    if HAVE_TORCH:
        assert layer["forward"]["target_ratio"] == 1.0
        assert layer["backward"]["target_ratio"] == 1.5
    assert png.stat().st_size > 0 or "matplotlib not installed" in out


def test_bench_conv_rejects_unknown_layer(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "bench_conv.py"), "--layers", "nope",
                           "--json", str(tmp_path / "x.json")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "unknown layer" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_bench_correlate_quick(tmp_path):
    js = tmp_path / "corr.json"
    out = _run("bench_correlate.py", "--quick", "--json", str(js))
    assert "speedup" in out
    data = json.loads(js.read_text())
    assert data["protocol"]["size"] == 128 and data["protocol"]["dtype"] == "float64"
    assert set(data["results"]) == {"valid", "same", "full"}
    for mode, r in data["results"].items():
        assert r["matches_scipy"] is True
        assert {"scipy_ms", "nbconv_ms", "speedup", "meets_target"} <= set(r)
        assert r["speedup"] > 0
        assert (r["target"] is None) == (mode == "full")


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed: the twin check needs it")
def test_bench_models_quick_proves_the_twins_equal(tmp_path):
    """The PyTorch twins of lenet5 and resnet18 (a Graph with batch norm and residual adds)
    agree with nbconv before anything is timed, and so does resnet18's PyTorch-style form with
    its builder; the script exits 1 if they do not."""
    js = tmp_path / "models.json"
    out = _run("bench_models.py", "--quick", "--models", "lenet5,resnet18_pystyle",
               "--threads", "1", "--json", str(js), "--png", "")
    assert out.count("-> OK") == 3, out
    assert "resnet18 (pystyle)" in out and "Seq/Graph ms" in out
    data = json.loads(js.read_text())
    assert [r["model"] for r in data["results"]] == ["lenet5", "resnet18", "resnet18_pystyle"]
    assert data["targets"]["pystyle_vs_builder"] == 0.97
    for r in data["results"][:2]:
        assert r["check"]["ok"] and r["check"]["grads_max_rel_err_float64"] < 1e-8
        for task in ("train", "inference"):
            assert r[task]["speed_ratio"] > 0 and r[task]["nbconv"]["images_per_s"] > 0
    p = data["results"][2]
    assert p["builder"] == "resnet18" and p["form"] == "pystyle"
    assert p["check_vs_builder"]["ok"] and p["parameters"] == data["results"][1]["parameters"]
    for task in ("train", "inference"):
        s = p[task]
        assert s["nbconv"]["images_per_s"] > 0 and s["speed_ratio"] > 0
        assert s["builder"] == data["results"][1][task]["nbconv"]  # the same measurement
        assert s["speed_ratio_vs_builder"] == pytest.approx(
            s["nbconv"]["images_per_s"] / s["builder"]["images_per_s"])
        assert isinstance(s["meets_target_vs_builder"], bool)


def test_bench_models_profile_accounts_for_the_step(tmp_path):
    out = _run("bench_models.py", "--profile", "--models", "lenet5", "--batch", "8",
               "--profile-steps", "2", "--threads", "1")
    assert "Conv2d+ReLU forward (fused)" in out and "Linear backward" in out
    assert "optimizer step" in out and "the rest" in out and "TOTAL" in out


def test_bench_pool_models_quick(tmp_path):
    js = tmp_path / "pool.json"
    out = _run("bench_pool_models.py", "--quick", "--models", "googlenet,vgg11", "--threads", "1",
               "--json", str(js))
    assert "MaxPool2d(k3 s1 p1) 192x4x4" in out and "AdaptiveAvgPool2d" in out
    data = json.loads(js.read_text())
    assert {"benchmark", "machine", "protocol", "models", "results", "summary"} <= set(data)
    assert data["summary"]["wrong_results"] == []
    r = data["results"][0]
    assert {"label", "kind", "batch", "shape", "uses", "train_forward", "backward",
            "eval_forward"} <= set(r)
    for part in ("train_forward", "backward", "eval_forward"):
        assert r[part]["nbconv_ms"] > 0
        if HAVE_TORCH:
            assert r[part]["ratio"] > 0 and r["check_ok"]


def test_bench_tapgemm_one_layer(tmp_path):
    js = tmp_path / "tap.json"
    out = _run("bench_tapgemm.py", "--models", "resnet18", "--layers", "512->512 1x1",
               "--batches", "2", "--rounds", "1", "--budget", "0.01", "--min-repeats", "1",
               "--threads", "1", "--json", str(js))
    assert "resnet18 512->512 1x1" in out
    r = json.loads(js.read_text())["results"][0]
    assert r["fwd"]["algo"] == r["bwd"]["algo"] == "tapgemm@1x1"  # auto takes tap-GEMM here
    assert r["fwd"]["err"] < 1e-5 and r["bwd"]["err"] < 1e-5  # tap agrees with auto's path


def test_bench_recording_quick(tmp_path):
    js = tmp_path / "recording.json"
    out = _run("bench_recording.py", "--quick", "--threads", "1", "--batch", "8",
               "--json", str(js))
    assert "same gradients check" in out and "-> OK" in out
    data = json.loads(js.read_text())
    assert data["gradient_check_rel_err"] <= 1e-10
    forms = {"declared, raw", "declared", "pystyle"} | ({"torch"} if HAVE_TORCH else set())
    assert set(data["results"]) == forms
    assert all(r["median_s"] > 0 for r in data["results"].values())


@pytest.mark.skipif(not HAVE_TORCH, reason="bench_norms.py reports ratios to PyTorch")
def test_bench_norms_quick(tmp_path):
    js = tmp_path / "norms.json"
    out = _run("bench_norms.py", "--quick", "--threads", "1", "--json", str(js))
    assert "GroupNorm(32, 256)" in out and "ratio" in out
    data = json.loads(js.read_text())
    assert data["benchmark"] == "norms" and data["quick"] is True
    assert data["machine"]["nbconv_threads"] == 1 and data["machine"]["load_average"]
    assert set(data["results"]) == {"GroupNorm(32, 256)", "LayerNorm((256, 16, 16))",
                                    "InstanceNorm2d(64)"}
    for r in data["results"].values():
        assert r["matches_torch"] is True and r["in_target"] is True
        for part in ("step", "forward"):
            assert r[part]["nbconv_ms"] > 0 and r[part]["torch_ms"] > 0 and r[part]["ratio"] > 0


def test_bench_direct_families_quick(tmp_path):
    """Every family forced on LeNet-5's layers and a strided depthwise layer runs and gives
    auto's result (the script checks each against ``algorithm="auto"``)."""
    out_csv = tmp_path / "families.csv"
    out = _run("bench_direct_families.py", "--quick", "--threads", "1", "--csv", str(out_csv))
    assert "passes each family wins" in out
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    layers = {r["layer"] for r in rows}
    assert any(name.startswith("lenet5") for name in layers) and "dw 3x3 s2" in layers
    assert {r["pass"] for r in rows} == {"fwd", "data", "weight"}
    assert {r["family"] for r in rows} == {"rows", "wide", "pixvec", "regblock", "depthwise"}
    for r in rows:
        assert float(r["rel_err"]) <= 1e-4, r
        assert r["auto"] in {"rows", "wide", "pixvec", "regblock", "depthwise"}


def test_bench_startup_kernel_table_ranks_own_compile_time(monkeypatch):
    """The startup benchmark's list of the longest compilations: by own time (a kernel's
    callees compile first and count apart), top N, with the total of own times."""
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_startup

    times = {"nbconv.kernels.a._outer": [1.0, 5.0], "nbconv.kernels.b._inner": [4.0, 4.0],
             "nbconv.kernels.c._small": [0.5, 0.5]}
    text = bench_startup.kernel_table(times, 2)
    assert "5.5 s in 3 functions" in text
    lines = [ln.split() for ln in text.splitlines()[3:]]
    assert lines == [["kernels.b._inner", "4.00", "4.00"], ["kernels.a._outer", "1.00", "5.00"]]
