"""Inference of every ``nbconv.models`` builder: nbconv against onnxruntime on the exported file.

Each model is exported with ``nbconv.onnx.export`` and run by onnxruntime's CPU execution
provider (``intra_op_num_threads`` = ``--threads``, graph optimisations on) on the same input;
before timing, the script checks that both engines give the same outputs (max |diff| / max
|output| <= 1e-4).  nbconv runs in eval mode inside ``nbconv.no_grad()``.

Reported: ms per batch, images/s and the speed ratio nbconv / onnxruntime (higher is better).
A report only: there is no target.

Inputs: LeNet-5, the seed's Net and SimpleConvNet 1x28x28 (their fixed size), the zoo models
3x32x32 (as in SPEC section 7's whole-network protocol), float32, batch ``--batch`` (32).

Usage::

    python benchmarks/bench_onnx.py [--quick] [--models lenet5,resnet18] [--batch 32]
                                    [--width 1.0] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from _common import (
    RESULTS_DIR,
    fmt_num,
    format_table,
    machine_info,
    measure_group,
    print_machine,
    set_threads,
    write_json,
)

import nbconv

MODELS = ["lenet5", "seed_net", "simple_convnet", "alexnet", "zfnet", "vgg11", "nin",
          "googlenet", "resnet18"]
QUICK_WIDTH = 1 / 8
CHECK_RTOL = 1e-4


def build(name: str, width: float):
    """(model, per-image input shape)."""
    m = nbconv.models
    if name == "lenet5":
        return m.lenet5(activation="relu"), (1, 28, 28)
    if name == "seed_net":
        return m.seed_net(), (1, 28, 28)
    if name == "simple_convnet":
        return m.simple_convnet(rng=0), (1, 28, 28)
    return getattr(m, name)(in_channels=3, width_mult=width), (3, 32, 32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"width {QUICK_WIDTH:g}, batch 4, tiny time budget")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated builders")
    ap.add_argument("--batch", type=int, default=None, help="default 32 (4 with --quick)")
    ap.add_argument("--width", type=float, default=None,
                    help=f"width_mult of the zoo models (default 1; {QUICK_WIDTH:g} with --quick)")
    ap.add_argument("--threads", type=int, default=2, help="threads for nbconv and onnxruntime")
    ap.add_argument("--min-repeats", type=int, default=None, help="default 5 (2 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 1.0; 0.02 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "onnx.json"), help="JSON output path")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {MODELS}")
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("onnxruntime not installed: pip install 'nbconv[onnx]'")
    batch = args.batch or (4 if args.quick else 32)
    width = args.width or (QUICK_WIDTH if args.quick else 1.0)
    timing = {
        "min_repeats": args.min_repeats or (2 if args.quick else 5),
        "budget_s": args.budget if args.budget is not None else (0.02 if args.quick else 1.0),
        "rounds": args.rounds or (1 if args.quick else 3),
        "settle_s": 0.0 if args.quick else 0.02,
    }
    set_threads(args.threads)
    print_machine(machine_info())

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    # onnxruntime's pool threads otherwise spin after each run and starve numba's threads in
    # the next contender's block (nbconv ran 100x slower interleaved with a spinning session)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    results, rows, bad = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            nbconv.manual_seed(0)
            model, shape = build(name, width)
            model.eval()
            x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
            path = os.path.join(tmp, f"{name}.onnx")
            t0 = time.perf_counter()
            nbconv.onnx.export(model, path, (batch, *shape))
            export_s = time.perf_counter() - t0
            sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

            def nb(model=model, x=x):
                with nbconv.no_grad():
                    return model.forward(x)

            def rt(sess=sess, x=x):
                return sess.run(None, {"input": x})[0]

            first = {}
            outs = {}
            for k, f in (("nbconv", nb), ("onnxruntime", rt)):
                t0 = time.perf_counter()
                outs[k] = f()
                first[k] = time.perf_counter() - t0
            ref = outs["onnxruntime"]
            err = float(np.max(np.abs(outs["nbconv"] - ref)) / max(np.max(np.abs(ref)), 1e-30))
            ok = err <= CHECK_RTOL
            if not ok:
                bad.append(name)
            r = measure_group({"nbconv": nb, "onnxruntime": rt}, first_s=first, **timing)
            for k, st in r.items():
                st["first_call_s"] = first[k]
                st["ms"] = st["median_s"] * 1e3
                st["images_per_s"] = batch / st["median_s"]
            speed = r["nbconv"]["images_per_s"] / r["onnxruntime"]["images_per_s"]
            results[name] = {"input": [batch, *shape], "export_s": export_s,
                             "max_rel_err": err, "check_ok": ok, "speed_ratio": speed, **r}
            rows.append([name, "x".join(map(str, (batch, *shape))), fmt_num(r["nbconv"]["ms"]),
                         fmt_num(r["onnxruntime"]["ms"]), fmt_num(r["nbconv"]["images_per_s"], 0),
                         fmt_num(r["onnxruntime"]["images_per_s"], 0), fmt_num(speed),
                         f"{err:.1e}" + ("" if ok else " MISMATCH")])
            print(f"  {name}: done", flush=True)
    print()
    print(f"inference, float32, width_mult {width:g} (zoo models); speed ratio = nbconv img/s / "
          "onnxruntime img/s, higher is better; a report, no target")
    print(format_table(["model", "input", "nbconv ms", "ort ms", "nbconv img/s", "ort img/s",
                        "speed ratio", "max rel err"], rows))
    print()
    payload = {
        "benchmark": "onnx",
        "machine": machine_info(),
        "protocol": {"dtype": "float32", "threads": args.threads, "batch": batch,
                     "width_mult": width, **timing, "statistic": "median of per-round medians",
                     "nbconv": "eval mode, nbconv.no_grad()",
                     "onnxruntime": f"{ort.__version__}, CPUExecutionProvider, "
                                    "intra_op_num_threads = threads, no spinning, default "
                                    "optimisations"},
        "quick": args.quick,
        "results": results,
        "summary": {"wrong_results": bad,
                    "speed_ratios": {n: r["speed_ratio"] for n, r in results.items()}},
    }
    write_json(args.json, payload)
    if bad:
        print(f"OUTPUTS DISAGREE for {bad}: the comparison is not apples to apples")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
