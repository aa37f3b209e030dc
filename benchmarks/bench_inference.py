"""Inference of the zoo models: nbconv (plain and compiled) against onnxruntime and PyTorch.

Every library runs in a worker process of its own, which imports that library alone (the
PyTorch worker imports nbconv too, after torch, to build its twin): two thread pools in one
process stall each other, and sharing its process with onnxruntime's pool made the old
``bench_onnx.py`` report nbconv up to 16x too slow (issue 28).  The script re-invokes itself
with ``--worker LIB``; the parent writes each model's weights (``.npz``), the file
``nbconv.onnx.export`` makes of it (``.onnx``) and each input (``.npz``) to a temporary folder,
and the workers write their outputs back there.  Contenders:

* ``nbconv``: ``model.forward(x)`` in eval mode inside ``nbconv.no_grad()``;
* ``compiled``: the callable ``nbconv.compile(model, x.shape)`` returns, where this nbconv has
  ``compile`` (else the column is left out and the table says so);
* ``onnxruntime``: ``InferenceSession`` on the exported file, CPU provider, default graph
  optimisations, ``intra_op_num_threads`` = threads, ``inter_op_num_threads`` = 1, sequential,
  spinning off (``session.intra_op.allow_spinning`` = ``session.inter_op.allow_spinning`` =
  ``"0"``; ``--ort-spinning`` turns it on);
* ``torch``: the PyTorch twin of the model (``torch_twin.py``, the same weights) in eval mode
  under ``torch.inference_mode()``, ``torch.set_num_threads(threads)``; when torch is installed.

Protocol: one worker computes at a time while the others wait on a pipe (the script measures
the CPU time the waiting processes use during every timed block and prints it).  Per model,
batch and thread count, every worker first runs the model once (its output is checked against
nbconv plain's: ``max|out - ref| / max|ref| <= 1e-4``; a mismatch marks the row and the exit
status), then the workers take turns over ``--rounds`` rounds, the order rotating: a pause of
``--settle`` seconds, one untimed call (skipped for calls over 50 ms), then timed calls
(``time.perf_counter``, garbage collector paused) until ``ceil(min_repeats / rounds)`` calls
and ``budget / rounds`` seconds.  Reported: the median of the per-round medians, in ms per batch
and images/s, and the images/s ratios nbconv / onnxruntime and nbconv / PyTorch with the spread
of their per-round values.  The workers run with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``
removed from their environment (the benchmark command alone, as a user's machine runs).

Targets (issue 28), judged on the compiled model (on plain nbconv where there is no
``compile``): images/s >= 0.8x onnxruntime's on nin, googlenet and resnet18 and >= 1.0x on
alexnet, vgg11 and lenet5 at batch 32 and 128 (the floor), >= 1.0x on all at batch 32 (the
aim), lenet5's batch-1 latency <= onnxruntime's, and >= 1.5x PyTorch's images/s at batch 32 and
128.

Usage::

    python benchmarks/bench_inference.py [--models lenet5,resnet18] [--batches 1,32,128]
                                         [--threads 1,2] [--rounds 3] [--budget 1.5]
                                         [--json PATH] [--png PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from inference_worker import RUNNERS, UNSET_ENV, worker_main

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = ["lenet5", "nin", "googlenet", "resnet18", "alexnet", "vgg11"]
#: worker name -> column label
LIBS = {"nbconv": "nbconv", "compiled": "compiled", "onnxruntime": "ort", "torch": "torch"}
CHECK_RTOL = 1e-4
#: a block's untimed call is skipped when the previous median exceeds this (seconds)
SLOW_S = 0.05
#: per-round medians further apart than this factor mark a timing noisy
NOISY = 1.5
#: images/s over onnxruntime's at batch 32 and 128 (issue 28's floor); 1.0 at batch 32 is the aim
ORT_FLOOR = {"lenet5": 1.0, "alexnet": 1.0, "vgg11": 1.0, "nin": 0.8, "googlenet": 0.8,
             "resnet18": 0.8}
ORT_AIM = 1.0
TORCH_TARGET = 1.5
TARGET_BATCHES = (32, 128)


def targets_for(model: str, batch: int) -> dict:
    """Issue 28's targets for one row: ``vs_ort`` (floor), ``vs_ort_aim``, ``vs_torch`` (None
    where the issue sets none)."""
    floor = ORT_FLOOR.get(model) if batch in TARGET_BATCHES else None
    if model == "lenet5" and batch == 1:
        floor = 1.0  # batch-1 latency <= onnxruntime's
    known = model in ORT_FLOOR and batch in TARGET_BATCHES
    return {"vs_ort": floor, "vs_ort_aim": ORT_AIM if known and batch == 32 else None,
            "vs_torch": TORCH_TARGET if known else None}


# --------------------------------------------------------------------------- parent side


class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process running one library on ``threads`` threads."""

    def __init__(self, lib: str, threads: int, env: dict, extra: tuple = ()):
        self.lib, self.threads = lib, threads
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", lib,
             "--threads", str(threads), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.info = None

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise WorkerError(f"{self.lib} worker exited (status {code}); see its stderr above")
        msg = json.loads(line)
        if not msg.pop("ok"):
            print(msg.get("traceback", ""), file=sys.stderr)
            raise WorkerError(f"{self.lib} worker: {msg['error']}")
        return msg

    def ready(self) -> dict:
        self.info = self._read()["info"]
        return self.info

    def call(self, op: str, **kw) -> dict:
        if self.proc.poll() is not None:
            raise WorkerError(f"{self.lib} worker is gone (status {self.proc.returncode})")
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system, all threads) the process has used, from /proc."""
        return _proc_cpu_s(self.proc.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    """The CPU's model name, from lscpu (else /proc/cpuinfo)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from _common import _cpu_model

    return _cpu_model()


def worker_env() -> tuple[dict, dict]:
    """(the workers' environment, the variables removed from it with their values)."""
    env = dict(os.environ)
    removed = {k: env.pop(k) for k in UNSET_ENV if k in env}
    return env, removed


def prepare_model(name: str, folder: Path, batches: list[int], seed: int = 0) -> dict:
    """Build ``name``, give its batch norms non-trivial running statistics (so that a wrongly
    folded one shows in the check), and write its weights, its ONNX file and one input per
    batch size.  Returns the file paths."""
    from zoo import MODELS

    import nbconv

    build, shape, _ = MODELS[name]
    nbconv.manual_seed(seed)
    net = build()
    rng = np.random.default_rng(seed)
    for _, m in net.named_modules():
        if "running_var" in m._buffers:
            c = m._buffers["running_var"].shape
            m._buffers["running_mean"][...] = rng.uniform(-0.2, 0.2, c)
            m._buffers["running_var"][...] = rng.uniform(0.5, 1.5, c)
    net.eval()
    files = {"weights": str(folder / f"{name}.npz"), "onnx": str(folder / f"{name}.onnx"),
             "inputs": {}}
    np.savez(files["weights"], **net.state_dict())
    nbconv.onnx.export(net, files["onnx"], (min(batches), *shape))
    for b in batches:
        path = folder / f"{name}_b{b}_x.npz"
        np.savez(path, x=rng.standard_normal((b, *shape), dtype=np.float32))
        files["inputs"][b] = str(path)
    return {"shape": list(shape), "parameters": sum(p.data.size for p in net.parameters()),
            **files}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(1e-30, float(np.max(np.abs(b)))))


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure_row(workers: dict, name: str, prep: dict, batch: int, threads: int, timing: dict,
                folder: Path, tag: str, judged: str) -> dict:
    """Load, check and time every library on one (model, batch, threads)."""
    row = {"model": name, "input": prep["shape"], "batch": batch, "threads": threads,
           "libraries": {}, "errors": {}}
    load_and_check(row, workers, prep, folder, tag)
    idle = time_rounds(row, workers, timing, tag)
    for lib in list(row["libraries"]):
        st = row["libraries"][lib]
        if lib in row["errors"] or not st.get("round_medians_s"):
            row["libraries"].pop(lib)
            continue
        times = st.pop("times_s")
        st.update(median_s=statistics.median(st["round_medians_s"]),
                  pooled_median_s=statistics.median(times), min_s=min(times), repeats=len(times))
        st["ms"] = st["median_s"] * 1e3
        st["images_per_s"] = batch / st["median_s"]
        st["noisy"] = max(st["round_medians_s"]) > NOISY * min(st["round_medians_s"])
    row["idle_cpu"] = {"cpu_s": sum(b["idle_cpu_s"] for b in idle),
                       "blocks_wall_s": sum(b["wall_s"] for b in idle)}
    add_ratios(row, judged)
    return row


def load_and_check(row, workers, prep, folder, tag) -> None:
    """Every worker builds the row's model and runs it once, one after the other; each output
    is compared with nbconv plain's."""
    name, batch = row["model"], row["batch"]
    spec = {"model": name, "weights": prep["weights"], "onnx": prep["onnx"],
            "input": prep["inputs"][batch]}
    outs = {}
    for lib, w in workers.items():
        out_path = folder / f"{name}_b{batch}_t{row['threads']}_{lib}.npy"
        try:
            res = w.call("load", **spec, output=str(out_path))
        except WorkerError as e:
            row["errors"][lib] = str(e)
            progress(f"{tag} {lib}: FAILED to load: {e}")
            continue
        row["libraries"][lib] = res
        outs[lib] = np.load(out_path)
        progress(f"{tag} {lib}: loaded (setup {res['setup_s']:.2f} s, first call "
                 f"{res['first_call_s'] * 1e3:.1f} ms)")
    ref = outs.get("nbconv")
    for lib, out in outs.items():
        if lib != "nbconv" and ref is not None:
            err = rel_err(out, ref)
            row["libraries"][lib].update(rel_err=err, check_ok=err <= CHECK_RTOL)


def time_rounds(row, workers, timing, tag) -> list[dict]:
    """The timed turns of the loaded libraries, rounds with the order rotating; adds
    ``round_medians_s`` and ``times_s`` to each library's entry.  Returns, per turn, its wall
    time and the CPU time the waiting processes (the parent, the other workers) used in it."""
    names = list(row["libraries"])
    per_block = -(-timing["min_repeats"] // timing["rounds"])
    block_budget = timing["budget_s"] / timing["rounds"]
    idle = []
    for r in range(timing["rounds"]):
        for lib in names[r % len(names):] + names[:r % len(names)]:
            if lib in row["errors"]:
                continue
            st = row["libraries"][lib]
            time.sleep(timing["settle_s"])
            last = st["round_medians_s"][-1] if st.get("round_medians_s") else st["first_call_s"]
            others = [w for k, w in workers.items() if k != lib]
            before = [w.cpu_s() for w in others]
            parent0, t0 = time.process_time(), time.perf_counter()
            try:
                times = workers[lib].call("time", calls=per_block, budget_s=block_budget,
                                          warm=last <= SLOW_S)["times"]
            except WorkerError as e:
                row["errors"][lib] = str(e)
                progress(f"{tag} {lib}: FAILED while timing: {e}")
                continue
            wall = time.perf_counter() - t0
            used = time.process_time() - parent0
            for w, b in zip(others, before):
                a = w.cpu_s()
                used += a - b if a is not None and b is not None else 0.0
            idle.append({"lib": lib, "wall_s": wall, "idle_cpu_s": used})
            st.setdefault("times_s", []).extend(times)
            st.setdefault("round_medians_s", []).append(statistics.median(times))
            progress(f"{tag} round {r + 1}/{timing['rounds']} {lib}: "
                     f"{statistics.median(times) * 1e3:.3f} ms (median of {len(times)})")
    return idle


def _ratio(row, fast, slow) -> dict | None:
    """Images/s of ``fast`` over ``slow`` in ``row``, with the per-round values."""
    libs = row["libraries"]
    if fast not in libs or slow not in libs:
        return None
    f, s = libs[fast], libs[slow]
    rounds = [b / a for a, b in zip(f["round_medians_s"], s["round_medians_s"])]
    return {"ratio": s["median_s"] / f["median_s"], "rounds": rounds}


def add_ratios(row, judged: str) -> None:
    """The images/s ratios of ``row`` and issue 28's verdicts on library ``judged``'s."""
    row["ratios"] = {f"{a}/{b}": _ratio(row, a, b)
                     for a in ("nbconv", "compiled") for b in ("onnxruntime", "torch")}
    tg = targets_for(row["model"], row["batch"])
    libs = row["libraries"]
    verdict, noisy = {}, {}
    for key, other in (("vs_ort", "onnxruntime"), ("vs_ort_aim", "onnxruntime"),
                       ("vs_torch", "torch")):
        r = row["ratios"][f"{judged}/{other}"]
        verdict[key] = None if tg[key] is None or r is None else r["ratio"] >= tg[key]
        noisy[key] = r is not None and any(libs[k].get("noisy") for k in (judged, other))
    row["targets"] = {"judged": judged, **tg, "met": verdict, "noisy": noisy}
    bad = [lib for lib, st in row["libraries"].items() if st.get("check_ok") is False]
    row["check_ok"] = not bad and "nbconv" not in row["errors"]
    row["mismatches"] = bad


# --------------------------------------------------------------------------- output


def _fmt(v, digits=2):
    from _common import fmt_num

    return fmt_num(v, digits)


def _ok(v, noisy=False) -> str:
    return "-" if v is None else ("ok" if v else "NO") + (" *" if noisy else "")


def _check_cell(row) -> str:
    if "nbconv" in row["errors"] or "nbconv" not in row["libraries"]:
        return "no reference"
    errs = {lib: st["rel_err"] for lib, st in row["libraries"].items() if "rel_err" in st}
    if row["mismatches"]:
        return "MISMATCH " + ", ".join(f"{LIBS[k]} {errs[k]:.1e}" for k in row["mismatches"])
    return f"agree ({max(errs.values()):.0e})" if errs else "agree"


def print_tables(rows, libs, compiled_note) -> None:
    from _common import format_table

    headers = ["model", "batch", "thr"]
    for lib in libs:
        headers += [f"{LIBS[lib]} ms", f"{LIBS[lib]} img/s"]
    headers += ["outputs vs nbconv"]
    table = []
    for r in rows:
        line = [r["model"], r["batch"], r["threads"]]
        for lib in libs:
            st = r["libraries"].get(lib)
            line += ([_fmt(st["ms"], 3) + (" *" if st["noisy"] else ""),
                      _fmt(st["images_per_s"], 0)] if st
                     else ["error" if lib in r["errors"] else "-", "-"])
        table.append(line + [_check_cell(r)])
    print("inference, float32, ms per batch (median of per-round medians) and images/s; "
          "each library in its own process")
    if compiled_note:
        print(compiled_note)
    print(format_table(headers, table, align="lrr" + "r" * 2 * len(libs) + "l"))
    if any(st["noisy"] for r in rows for st in r["libraries"].values()):
        print(f"* noisy: its per-round medians differ by more than {NOISY}x (other work on the "
              "machine?); see the per-round values in the JSON")
    print()
    judged = "compiled" if "compiled" in libs else "nbconv"
    headers = ["model", "batch", "thr"]
    pairs = [(a, b) for a in ("nbconv", "compiled") if a in libs
             for b in ("onnxruntime", "torch") if b in libs]
    for a, b in pairs:
        headers.append(f"{LIBS[a]}/{LIBS[b]}")
    has_ort, has_torch = "onnxruntime" in libs, "torch" in libs
    if has_ort:
        headers += [f"{LIBS[judged]}/ort rounds", "floor", "ok", "aim", "ok"]
    if has_torch:
        headers += ["vs torch", "ok"]
    table = []
    for r in rows:
        line = [r["model"], r["batch"], r["threads"]]
        for a, b in pairs:
            q = r["ratios"][f"{a}/{b}"]
            line.append(_fmt(q["ratio"]) if q else "-")
        tg, met, noisy = r["targets"], r["targets"]["met"], r["targets"]["noisy"]
        if has_ort:
            q = r["ratios"][f"{judged}/onnxruntime"]
            line += [f"{_fmt(min(q['rounds']))}-{_fmt(max(q['rounds']))}" if q else "-",
                     f">= {tg['vs_ort']}" if tg["vs_ort"] else "-",
                     _ok(met["vs_ort"], noisy["vs_ort"]),
                     f">= {tg['vs_ort_aim']}" if tg["vs_ort_aim"] else "-",
                     _ok(met["vs_ort_aim"], noisy["vs_ort_aim"])]
        if has_torch:
            line += [f">= {tg['vs_torch']}" if tg["vs_torch"] else "-",
                     _ok(met["vs_torch"], noisy["vs_torch"])]
        table.append(line)
    print(f"images/s ratios (higher is better: a/b = a's images/s over b's); targets of issue 28 "
          f"judged on nbconv {'compiled' if judged == 'compiled' else 'plain'}")
    print(format_table(headers, table))
    if any(v for r in rows for v in r["targets"]["noisy"].values()):
        print("* a verdict on a noisy time: measure again before trusting it")
    print()


def print_header(cpu: str, infos: dict, removed: dict, flags: list, load) -> None:
    print(f"machine : {cpu} ({', '.join(flags) or 'no AVX flags'}), {os.cpu_count()} cores, "
          f"load average {load}")
    versions = {}
    for info in infos.values():
        versions.update({k: v for k, v in info["versions"].items() if v})
    first = next(iter(infos.values()))
    print(f"versions: python {first['python']}, numpy {first['numpy']}, "
          + ", ".join(f"{k} {versions.get(k, '(not installed)')}"
                      for k in ("nbconv", "numba", "onnxruntime", "torch")))
    nbinfo = infos.get("nbconv")
    if nbinfo:
        layer = nbinfo.get("numba_threading_layer") or "(not initialised)"
        blas = [p for p in nbinfo["threadpools"] if p["user_api"] == "blas"]
        print(f"numba   : threading layer {layer} (nbconv worker)")
        for p in blas:  # NumPy's and SciPy's wheels each bring their own OpenBLAS
            where = os.path.basename(os.path.dirname(p["filepath"] or ""))
            print(f"blas    : {p['internal_api']} {p['version']} ({where}), {p['architecture']} "
                  f"kernels, {p['num_threads']} threads (threadpoolctl in the nbconv worker)")
    for lib, info in infos.items():
        print(f"worker  : {lib:<11} imports {', '.join(info['loaded'])}")
    if removed:
        shown = ", ".join(f"{k}={v}" for k, v in removed.items())
        print(f"env     : workers run with {' and '.join(UNSET_ENV)} removed from their "
              f"environment (this shell sets {shown})")
    else:
        print(f"env     : {' and '.join(UNSET_ENV)} not set (workers inherit the environment)")
    if load is not None and load[0] > (os.cpu_count() or 1):
        print(f"WARNING : 1-minute load average {load[0]} exceeds the core count: other work "
              "shares the machine; rerun on an idle machine for numbers to keep")
    print()


def plot(rows, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    labels = [f"{r['model']} b{r['batch']} t{r['threads']}" for r in rows]
    values = {}
    for lib in ("nbconv", "compiled", "torch"):
        vals = [(_ratio(r, lib, "onnxruntime") or {}).get("ratio") for r in rows]
        if any(v is not None for v in vals):
            values[LIBS[lib]] = vals
    if not values:
        return
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(labels) + 2), 4.5))
    width = 0.8 / len(values)
    for k, (name, vals) in enumerate(values.items()):
        xs = [i + (k - (len(values) - 1) / 2) * width for i, v in enumerate(vals) if v is not None]
        ax.bar(xs, [v for v in vals if v is not None], width, label=name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.8, color="gray", lw=0.8, ls="--", label="floor 0.8 (nin, googlenet, resnet18)")
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("images/s over onnxruntime's")
    ax.set_title("Inference, float32, CPU, one process per library (higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart written to {path}")


# --------------------------------------------------------------------------- main


def _ints(text: str, flag: str, ap) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        ap.error(f"{flag}: expected comma-separated integers, got {text!r}")
    if not vals or min(vals) < 1:
        ap.error(f"{flag}: expected positive integers, got {text!r}")
    return vals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help=f"comma-separated zoo models (default {','.join(DEFAULT_MODELS)})")
    ap.add_argument("--batches", default="1,32,128", help="batch sizes (1,32,128)")
    ap.add_argument("--threads", default="1,2", help="thread counts (1,2)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--min-repeats", type=int, default=None,
                    help="timed calls per library and row, at least (default 6; 2 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed calls per library and row (default 1.5; 0.02 with "
                         "--quick)")
    ap.add_argument("--settle", type=float, default=None,
                    help="pause before each block, seconds (default 0.05; 0 with --quick)")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: tiny budget, one round")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--no-compiled", action="store_true", help="skip nbconv.compile")
    ap.add_argument("--json", default=str(HERE / "results" / "inference.json"),
                    help="JSON output")
    ap.add_argument("--png", default=str(HERE / "results" / "inference.png"),
                    help="chart of images/s ratios to onnxruntime ('' skips it)")
    ap.add_argument("--ort-spinning", action="store_true",
                    help="let onnxruntime's threads spin (off by default; to measure the cost)")
    ap.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, int(args.threads), ort_spinning=args.ort_spinning)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    from zoo import MODELS

    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        ap.error(f"--models: unknown {unknown}; choose from {sorted(MODELS)}")
    batches = _ints(args.batches, "--batches", ap)
    threads_list = _ints(args.threads, "--threads", ap)
    timing = {"min_repeats": args.min_repeats or (2 if args.quick else 6),
              "budget_s": args.budget if args.budget is not None else
              (0.02 if args.quick else 1.5),
              "rounds": args.rounds or (1 if args.quick else 3),
              "settle_s": args.settle if args.settle is not None else
              (0.0 if args.quick else 0.05)}
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        sys.exit("onnxruntime and onnx are needed: pip install 'nbconv[onnx]'")
    from _common import TORCH_MISSING, _cpu_flags, write_json

    import nbconv

    top = nbconv.max_num_threads()
    if max(threads_list) > top:
        ap.error(f"--threads {args.threads}: at most {top} (NUMBA_NUM_THREADS={top}); set "
                 "NUMBA_NUM_THREADS to allow more")
    libs = ["nbconv"]
    compiled_note = None
    if args.no_compiled:
        compiled_note = "nbconv compiled: left out (--no-compiled)"
    elif hasattr(nbconv, "compile"):
        libs.append("compiled")
    else:
        compiled_note = ("nbconv compiled: left out, this nbconv has no nbconv.compile "
                         f"({nbconv.__file__})")
    libs.append("onnxruntime")
    if not args.no_torch:
        if importlib.util.find_spec("torch") is None:
            print(TORCH_MISSING)
        else:
            libs.append("torch")
    judged = "compiled" if "compiled" in libs else "nbconv"
    env, removed = worker_env()
    cpu, flags = cpu_model(), _cpu_flags()
    rows, infos = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        folder = Path(tmp)
        preps = {}
        for n in names:
            t0 = time.perf_counter()
            preps[n] = prepare_model(n, folder, batches)
            progress(f"{n}: weights, ONNX file and inputs written "
                     f"({time.perf_counter() - t0:.1f} s)")
        total = len(names) * len(batches) * len(threads_list)
        for threads in threads_list:
            extra = ("--ort-spinning",) if args.ort_spinning else ()
            workers = {lib: Worker(lib, threads, env, extra) for lib in libs}
            try:
                for lib, w in list(workers.items()):
                    try:
                        w.ready()
                    except WorkerError as e:
                        progress(f"threads {threads}: {e}; {lib} left out")
                        w.close()
                        del workers[lib]
                if "nbconv" not in workers:
                    sys.exit("the nbconv worker did not start; see the messages above")
                for n in names:
                    for b in batches:
                        tag = f"[{len(rows) + 1}/{total}] {n} b{b} t{threads}"
                        rows.append(measure_row(workers, n, preps[n], b, threads, timing,
                                                folder, tag, judged))
                        if not infos:
                            infos = {lib: w.call("info")["info"] for lib, w in workers.items()}
                            print_header(cpu, infos, removed, flags, _load())
            finally:
                for w in workers.values():
                    w.close()
    shown = [lib for lib in libs if any(lib in r["libraries"] for r in rows)]
    print_tables(rows, shown, compiled_note)
    idle_cpu = sum(r["idle_cpu"]["cpu_s"] for r in rows)
    idle = idle_cpu / max(1e-9, sum(r["idle_cpu"]["blocks_wall_s"] for r in rows))
    print(f"waiting processes (the parent and the idle workers) used {idle_cpu:.2f} CPU s, "
          f"{100 * idle:.2f}% of one core, during the timed blocks"
          + ("  WARNING: more than 2%, the workers did not wait quietly" if idle > 0.02 else ""))
    payload = {
        "benchmark": "inference",
        "machine": {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(),
                    "load_average_end": _load(), "workers": infos},
        "protocol": {"dtype": "float32", "batches": batches, "threads": threads_list,
                     **timing, "statistic": "median of per-round medians",
                     "processes": "one worker per library and thread count, one at a time",
                     "unset_env": list(UNSET_ENV), "unset_values": removed,
                     "nbconv": "eval, model.forward(x) in nbconv.no_grad()",
                     "compiled": "nbconv.compile(model, x.shape)(x)" if "compiled" in libs
                                 else compiled_note,
                     "onnxruntime": "CPUExecutionProvider, intra_op_num_threads = threads, "
                                    "inter_op 1, sequential, spinning "
                                    + ("on" if args.ort_spinning else "off"),
                     "torch": "twin in eval, torch.inference_mode()",
                     "check": f"max|out - nbconv| / max|nbconv| <= {CHECK_RTOL}"},
        "targets": {"vs_ort_floor": ORT_FLOOR, "vs_ort_floor_batches": TARGET_BATCHES,
                    "vs_ort_aim_batch32": ORT_AIM, "lenet5_batch1_vs_ort": 1.0,
                    "vs_torch": TORCH_TARGET},
        "compiled_available": "compiled" in libs,
        "quick": args.quick,
        "results": rows,
        "summary": {"wrong_results": [f"{r['model']} b{r['batch']} t{r['threads']}"
                                      for r in rows if not r["check_ok"]],
                    "errors": {f"{r['model']} b{r['batch']} t{r['threads']}": r["errors"]
                               for r in rows if r["errors"]},
                    "idle_cpu_share": idle},
    }
    write_json(args.json, payload)
    if args.png:
        plot(rows, args.png)
    status = 0
    for key, errs in payload["summary"]["errors"].items():
        for lib, msg in errs.items():
            print(f"ERROR   : {key} {lib}: {msg}")
            status = 1
    if payload["summary"]["wrong_results"]:
        print(f"OUTPUTS DISAGREE for {payload['summary']['wrong_results']}: those rows are not "
              "apples to apples")
        status = 1
    return status


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
