"""benchmarks/bench_inference.py: a smoke run (LeNet-5, batch 1, one thread, one round, tiny
repeat counts) in a subprocess, its table and JSON; and its verdict logic on made-up rows.
No assertion depends on a timing value."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbconv

REPO = Path(nbconv.__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_ONNX = importlib.util.find_spec("onnx") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_ort = pytest.mark.skipif(not (HAVE_ORT and HAVE_ONNX),
                               reason="onnxruntime/onnx not installed: pip install 'nbconv[onnx]'")


def _module():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_inference",
                                                      BENCH / "bench_inference.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


def _run(*args, timeout=120, **env):
    return subprocess.run([sys.executable, str(BENCH / "bench_inference.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


@needs_ort
def test_smoke_run_lenet5_batch1(tmp_path):
    js, png = tmp_path / "inference.json", tmp_path / "inference.png"
    proc = _run("--models", "lenet5", "--batches", "1", "--threads", "1", "--rounds", "1",
                "--min-repeats", "2", "--budget", "0.01", "--settle", "0",
                "--json", str(js), "--png", str(png),
                OPENBLAS_CORETYPE="Haswell")  # the workers must run without it
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    expected = {"nbconv", "onnxruntime"} | ({"torch"} if HAVE_TORCH else set())
    if hasattr(nbconv, "compile"):
        expected.add("compiled")
    else:
        assert "nbconv compiled: left out" in out
    # both tables hold exactly one row, lenet5 at batch 1 on 1 thread, whose outputs agree
    rows = [line.split() for line in out.splitlines() if line.startswith("lenet5 ")]
    assert len(rows) == 2 and all(r[1:3] == ["1", "1"] for r in rows), out
    assert "agree" in rows[0] and "MISMATCH" not in out
    assert "removed from their environment (this shell sets OPENBLAS_CORETYPE=Haswell" in out
    # one progress line per timed block, on stderr
    assert sum("round 1/1" in line for line in proc.stderr.splitlines()) == len(expected)

    data = json.loads(js.read_text())
    assert data["benchmark"] == "inference" and data["summary"]["wrong_results"] == []
    assert data["compiled_available"] == ("compiled" in expected)
    (row,) = data["results"]
    assert (row["model"], row["batch"], row["threads"], row["input"]) == ("lenet5", 1, 1,
                                                                          [1, 28, 28])
    assert set(row["libraries"]) == expected and row["check_ok"] and not row["errors"]
    for lib, st in row["libraries"].items():
        assert st["ms"] > 0 and st["repeats"] >= 2 and len(st["round_medians_s"]) == 1
        if lib != "nbconv":
            assert st["check_ok"] and st["rel_err"] <= 1e-4
    assert row["ratios"]["nbconv/onnxruntime"]["ratio"] > 0
    assert row["targets"]["vs_ort"] == 1.0  # lenet5's batch-1 latency target
    workers = data["machine"]["workers"]
    assert workers["onnxruntime"]["loaded"] == ["onnxruntime"]  # no numba/torch in its process
    assert "torch" not in workers["nbconv"]["loaded"]
    assert all(w["env"]["OPENBLAS_CORETYPE"] is None for w in workers.values())
    assert png.stat().st_size > 0 or "matplotlib not installed" in out


def test_rejects_bad_arguments(tmp_path):
    js = tmp_path / "x.json"
    proc = _run("--models", "nope", "--json", str(js))
    assert proc.returncode == 2 and "--models: unknown ['nope']" in proc.stderr
    proc = _run("--models", "lenet5", "--batches", "0,32", "--json", str(js))
    assert proc.returncode == 2 and "--batches: expected positive integers" in proc.stderr
    proc = _run("--models", "lenet5", "--threads", "1,9999", "--json", str(js))
    assert proc.returncode == 2 and "--threads 1,9999: at most" in proc.stderr
    assert not js.exists()


def _row(model, batch, ms, errs=None):
    """A made-up measured row: ``ms`` per library (the same in every round)."""
    libs = {lib: {"median_s": t / 1e3, "round_medians_s": [t / 1e3] * 2} for lib, t in ms.items()}
    for lib, e in (errs or {}).items():
        libs[lib].update(rel_err=e, check_ok=e <= 1e-4)
    return {"model": model, "batch": batch, "threads": 2, "libraries": libs, "errors": {}}


def test_verdicts_follow_the_issue_targets():
    bi = _module()
    # resnet18 at batch 32: floor 0.8x onnxruntime, aim 1.0x, 1.5x PyTorch
    row = _row("resnet18", 32, {"nbconv": 30.0, "compiled": 18.0, "onnxruntime": 16.0,
                                "torch": 40.0}, {"compiled": 1e-6, "onnxruntime": 1e-6})
    bi.add_ratios(row, "compiled")
    assert row["ratios"]["compiled/onnxruntime"]["ratio"] == pytest.approx(16 / 18)
    assert row["ratios"]["nbconv/torch"]["ratio"] == pytest.approx(40 / 30)
    assert row["targets"]["met"] == {"vs_ort": True, "vs_ort_aim": False, "vs_torch": True}
    assert not any(row["targets"]["noisy"].values()) and row["check_ok"]
    row["libraries"]["torch"]["noisy"] = True  # the PyTorch verdict rests on a noisy time
    bi.add_ratios(row, "compiled")
    assert row["targets"]["noisy"] == {"vs_ort": False, "vs_ort_aim": False, "vs_torch": True}
    # vgg11 at batch 128: floor 1.0, no aim; judged on plain nbconv when there is no compile
    row = _row("vgg11", 128, {"nbconv": 100.0, "onnxruntime": 95.0})
    bi.add_ratios(row, "nbconv")
    assert row["targets"]["met"] == {"vs_ort": False, "vs_ort_aim": None, "vs_torch": None}
    # lenet5 at batch 1: latency <= onnxruntime's; other models have no batch-1 target
    assert bi.targets_for("lenet5", 1)["vs_ort"] == 1.0
    assert bi.targets_for("googlenet", 1) == {"vs_ort": None, "vs_ort_aim": None,
                                              "vs_torch": None}


def test_a_mismatch_marks_the_row():
    bi = _module()
    row = _row("nin", 32, {"nbconv": 10.0, "compiled": 5.0, "onnxruntime": 5.0},
               {"compiled": 3e-2, "onnxruntime": 1e-6})
    bi.add_ratios(row, "compiled")
    assert not row["check_ok"] and row["mismatches"] == ["compiled"]
    assert bi._check_cell(row).startswith("MISMATCH compiled 3.0e-02")
    assert row["ratios"]["compiled/onnxruntime"]["ratio"] == pytest.approx(1.0)  # still shown
