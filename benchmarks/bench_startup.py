"""JIT latency: ``import nbconv`` plus a model's first training step, empty and warm cache.

``--model lenet5`` (default; targets 60 s / 2 s) or ``--model resnet18`` (3x32x32, batch 32;
targets 60 s / 3 s).

Each measurement is a fresh Python subprocess with ``NUMBA_CACHE_DIR`` pointing at a new
temporary folder:

(a) empty cache: the first run compiles every kernel the step touches (target <= 60 s);
(b) warm cache: the same command again with the same folder, so every kernel loads from numba's
    on-disk cache (target <= 2 s); repeated ``--warm-runs`` times, median reported.

The child times, with ``time.perf_counter``, from just before ``import nbconv`` to the end of one
training step (forward + CrossEntropyLoss + backward + SGD momentum step on a random batch of 64
28x28 images); the table also shows the subprocess wall time (which adds interpreter start-up).
The number of cache index files the cold run wrote tells how many kernel functions were compiled;
numba's compile events give each function's compile time (``--kernels N`` lists the longest).

Usage::

    python benchmarks/bench_startup.py [--model resnet18] [--warm-runs 3] [--threads 2]
                                       [--json PATH]
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
from pathlib import Path

from _common import RESULTS_DIR, fmt_num, format_table, machine_info, print_machine, write_json

TARGETS = {"empty_cache_s": 60.0, "warm_cache_s": 2.0}
#: --model -> (builder call, input shape (C, H, W), default batch, targets): SPEC section 7
MODELS = {
    "lenet5": ("nbconv.models.lenet5(activation={activation!r})", (1, 28, 28), 64, TARGETS),
    "resnet18": ("nbconv.models.resnet18(in_channels=3)", (3, 32, 32), 32,
                 {"empty_cache_s": 60.0, "warm_cache_s": 3.0}),
}

CHILD = """
import time
t0 = time.perf_counter()
import json
import numpy as np
import nbconv
t_import = time.perf_counter() - t0
from numba.core import event
compile_s = {{}}  # function -> [own seconds, seconds with the functions it compiled]
stack = []


class CompileTimes(event.Listener):
    def on_start(self, ev):
        stack.append([time.perf_counter(), 0.0])

    def on_end(self, ev):
        start, inner = stack.pop()
        took = time.perf_counter() - start
        f = ev.data["dispatcher"].py_func
        times = compile_s.setdefault(f.__module__ + "." + f.__qualname__, [0.0, 0.0])
        times[0] += took - inner
        times[1] += took
        if stack:
            stack[-1][1] += took


event.register("numba:compile", CompileTimes())
nbconv.set_num_threads({threads})
nbconv.manual_seed(0)
net = {builder}
crit = nbconv.losses.CrossEntropyLoss()
opt = nbconv.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
x = rng.standard_normal(({batch}, {shape}), dtype=np.float32)
t = rng.integers(0, 10, {batch})
t1 = time.perf_counter()
opt.zero_grad()
loss = crit.forward(net.forward(x), t)
net.backward(crit.backward())
opt.step()
t_end = time.perf_counter()
print("RESULT " + json.dumps({{"import_s": t_import, "step_s": t_end - t1,
                              "total_s": t_end - t0, "loss": float(loss),
                              "compile_s": compile_s}}))
"""


def kernel_table(compile_s: dict, top: int) -> str:
    """The ``top`` functions of the empty-cache run by their own compile time (the time spent
    compiling the functions they call, which numba compiles first, counted apart)."""
    own_total = sum(own for own, _ in compile_s.values())
    ranked = sorted(compile_s.items(), key=lambda kv: -kv[1][0])[:top]
    rows = [[name.removeprefix("nbconv."), f"{own:.2f}", f"{total:.2f}"]
            for name, (own, total) in ranked]
    return (f"compilation in the empty-cache run: {own_total:.1f} s in {len(compile_s)} "
            f"functions; the {len(rows)} longest, seconds\n"
            + format_table(["function", "own", "with callees"], rows))


def run_child(code: str, cache_dir: str, timeout: float) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    out["process_wall_s"] = wall
    out["warnings"] = sorted({ln.strip() for ln in proc.stderr.splitlines() if "Warning" in ln})
    for w in out["warnings"]:
        print(f"  child warning: {w}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one warm run only")
    ap.add_argument("--warm-runs", type=int, default=None, help="warm-cache runs (3)")
    ap.add_argument("--threads", type=int, default=2, help="nbconv threads in the child (2)")
    ap.add_argument("--model", default="lenet5", choices=sorted(MODELS),
                    help="lenet5 (1x28x28, batch 64) or resnet18 (3x32x32, batch 32)")
    ap.add_argument("--activation", default="relu", help="lenet5 activation (relu)")
    ap.add_argument("--batch", type=int, default=None, help="default: the model's")
    ap.add_argument("--timeout", type=float, default=900.0, help="per child, seconds")
    ap.add_argument("--keep-cache", action="store_true", help="do not delete the cache folder")
    ap.add_argument("--kernels", type=int, default=12,
                    help="list the functions whose compilation took longest (12; 0: none)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "startup.json"), help="JSON output path")
    args = ap.parse_args(argv)
    warm_runs = args.warm_runs or (1 if args.quick else 3)
    print_machine(machine_info())
    builder, shape, batch, targets = MODELS[args.model]
    args.batch = args.batch or batch
    code = CHILD.format(threads=args.threads, batch=args.batch,
                        builder=builder.format(activation=args.activation),
                        shape=", ".join(map(str, shape)))

    tmp = tempfile.TemporaryDirectory(prefix="nbconv_bench_cache_")
    cache = tmp.name
    try:
        print(f"NUMBA_CACHE_DIR={cache}")
        print("empty cache run (compiles everything the step uses) ...", flush=True)
        cold = run_child(code, cache, args.timeout)
        files = [p for p in Path(cache).rglob("*") if p.is_file()]
        n_index = sum(p.suffix == ".nbi" for p in files)
        n_data = sum(p.suffix == ".nbc" for p in files)
        warm = []
        for i in range(warm_runs):
            print(f"warm cache run {i + 1}/{warm_runs} ...", flush=True)
            warm.append(run_child(code, cache, args.timeout))
    finally:
        if args.keep_cache:
            print(f"cache kept in {cache}")
        else:
            tmp.cleanup()
    print()
    med = {k: statistics.median(w[k] for w in warm)
           for k in ("import_s", "step_s", "total_s", "process_wall_s")}
    rows = [
        ["empty cache", fmt_num(cold["import_s"]), fmt_num(cold["step_s"]),
         fmt_num(cold["total_s"]), fmt_num(cold["process_wall_s"]),
         f"<= {targets['empty_cache_s']:g}",
         "yes" if cold["total_s"] <= targets["empty_cache_s"] else "NO"],
        [f"warm cache (median of {warm_runs})", fmt_num(med["import_s"]),
         fmt_num(med["step_s"]), fmt_num(med["total_s"]), fmt_num(med["process_wall_s"]),
         f"<= {targets['warm_cache_s']:g}",
         "yes" if med["total_s"] <= targets["warm_cache_s"] else "NO"],
    ]
    what = f"{args.model}" + (f", {args.activation}" if args.model == "lenet5" else "")
    print(f"import nbconv + first training step of {what} (batch {args.batch}), seconds; "
          f"nbconv threads {args.threads}")
    print(format_table(["cache", "import", "first step", "import+step", "process wall",
                        "target", "ok"], rows))
    print(f"\nthe empty-cache run wrote {n_index} cache index files (.nbi, one per compiled "
          f"kernel function) and {n_data} compiled-code files (.nbc)")
    if args.kernels > 0:
        print()
        print(kernel_table(cold["compile_s"], args.kernels))
    print()
    payload = {
        "benchmark": "startup",
        "machine": machine_info(),
        "protocol": {
            "measured": "child perf_counter from before `import nbconv` to the end of one "
                        "training step; process_wall_s adds interpreter start-up",
            "model": args.model, "threads": args.threads, "batch": args.batch,
            "activation": args.activation,
            "warm_runs": warm_runs,
        },
        "targets": targets,
        "quick": args.quick,
        "empty_cache": cold,
        "warm_cache_runs": warm,
        "warm_cache_median": med,
        "cache_index_files": n_index,
        "cache_data_files": n_data,
        "meets_targets": {
            "empty_cache": cold["total_s"] <= targets["empty_cache_s"],
            "warm_cache": med["total_s"] <= targets["warm_cache_s"],
        },
    }
    write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
