"""A/B of one nbconv environment variable: compile time and speed of the zoo's models.

For settings that change how kernels are compiled (``NBCONV_LOOP_UNSWITCH``) both sides cannot
live in one process, so each side runs in processes of its own with its own numba cache folder,
the sides alternating round by round (the order flips every round).  The first round of each
side starts from an empty cache: its "first calls" column is the time of every model's first
training step, first plain forward and both compilations (kernels compiled then); later rounds
load the kernels from that side's cache.  Each round times, per model: one training step
(SGD momentum, batch 32, LeNet 64), the plain forward in eval mode under ``no_grad`` (same
batch) and ``nbconv.compile``'s call at that batch and at batch 1, medians of 7, 9, 15 and 51
calls.  The table gives the median and the minimum over the warm rounds (the minimum is the
steadier figure on a shared host) and the ratio B / A.

``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are removed from the children's environment.

Usage::

    python benchmarks/bench_env_ab.py --var NBCONV_LOOP_UNSWITCH --values 0,1 \\
        [--models lenet5,nin,googlenet,resnet18,alexnet,vgg11] [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from _timing import timed_calls

MEASURES = ("train", "infer", "compiled", "compiled_b1")
CALLS = {"train": 7, "infer": 9, "compiled": 15, "compiled_b1": 51}


def _median_ms(fn, calls: int) -> float:
    """Median milliseconds of ``calls`` calls (the shared timing loop, GC paused)."""
    return 1e3 * float(np.median(timed_calls(fn, calls, 0.0)))


def _time_model(nbconv, build, shape, batch: int) -> dict:
    """First-call seconds and medians (ms) of one model (see the module docstring)."""
    nbconv.manual_seed(0)
    net = build()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape, dtype=np.float32)
    target = rng.integers(0, 10, batch)
    loss = nbconv.losses.CrossEntropyLoss()
    opt = nbconv.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad()
        loss.forward(net.forward(x), target)
        net.backward(loss.backward())
        opt.step()

    t0 = time.perf_counter()
    step()
    net.eval()
    with nbconv.no_grad():
        net.forward(x)
        full = nbconv.compile(net, x.shape)
        full(x)
        single = nbconv.compile(net, (1,) + shape)
        single(x[:1])
        first = time.perf_counter() - t0
    net.train()
    row = {"first_s": first, "train": _median_ms(step, CALLS["train"])}
    net.eval()
    with nbconv.no_grad():
        row["infer"] = _median_ms(lambda: net.forward(x), CALLS["infer"])
        row["compiled"] = _median_ms(lambda: full(x), CALLS["compiled"])
        row["compiled_b1"] = _median_ms(lambda: single(x[:1]), CALLS["compiled_b1"])
    return row


def worker(models: list[str], threads: int) -> dict:
    """One side's round in this process: :func:`_time_model` of every model."""
    from zoo import MODELS

    import nbconv

    nbconv.set_num_threads(threads)
    out = {}
    for name in models:
        build, shape, _ = MODELS[name]
        out[name] = _time_model(nbconv, build, shape, 64 if name == "lenet5" else 32)
    return out


def _run_side(var, value, cache, models, threads) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, NBCONV_COMPILE_NOTICE="0")
    env[var] = value
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, __file__, "--worker", "--models", ",".join(models),
                           "--threads", str(threads)], env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker failed ({var}={value}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--var", default="NBCONV_LOOP_UNSWITCH", help="the variable (A/B)")
    ap.add_argument("--values", default="0,1", help="its two values, A,B")
    ap.add_argument("--models", default="lenet5,nin,googlenet,resnet18,alexnet,vgg11")
    ap.add_argument("--rounds", type=int, default=6, help="rounds per side (>= 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    models = args.models.split(",")
    if args.worker:
        print("RESULT " + json.dumps(worker(models, args.threads)))
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import format_table, machine_info, print_machine

    values = args.values.split(",")
    if len(values) != 2 or args.rounds < 2:
        raise SystemExit("--values takes two values, A,B; --rounds at least 2")
    print_machine(machine_info())
    results = {v: [] for v in values}
    with tempfile.TemporaryDirectory(prefix="nbconv_ab_") as tmp:
        for r in range(args.rounds):
            for v in (values if r % 2 == 0 else values[::-1]):
                results[v].append(_run_side(args.var, v, os.path.join(tmp, f"cache_{v}"),
                                            models, args.threads))
                print(f"round {r + 1}/{args.rounds}: {args.var}={v} done", flush=True)
    a, b = values
    rows = []
    for m in models:
        row = [m, f"{results[a][0][m]['first_s']:.1f} / {results[b][0][m]['first_s']:.1f}"]
        for key in MEASURES:
            for pick in (statistics.median, min):
                ta = pick(x[m][key] for x in results[a][1:])
                tb = pick(x[m][key] for x in results[b][1:])
                row.append(f"{ta:.3g} / {tb:.3g} ({tb / ta:.2f})")
        rows.append(row)
    heads = ["model", "first calls, s"] + [f"{k} {p}, ms" for k in MEASURES
                                           for p in ("median", "min")]
    print(f"\n{args.var}: A = {a}, B = {b}; cells A / B (B / A); threads {args.threads}; "
          f"{args.rounds - 1} warm rounds per side")
    print(format_table(heads, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
