"""conv2d forward and backward: nbconv's algorithms against PyTorch CPU and a NumPy im2col baseline.

Runs the SPEC section 7 layer set in float32 on ``--threads`` threads (default 2) for both nbconv
and PyTorch, and reports for every layer and pass the median time, GFLOP/s and the time ratio
nbconv / PyTorch (lower is better; targets: forward <= 1.0 on the LeNet layers and <= 1.25
elsewhere, backward <= 1.5 everywhere).

* forward: ``nbconv.conv2d(x, w, b, ..., algorithm=A)`` vs ``torch.nn.functional.conv2d`` under
  ``torch.no_grad()``.
* backward = dx + dweight + dbias: ``nbconv.conv2d_backward(dy, x, w, ..., bias=True,
  algorithm=A)`` vs ``torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)`` on a graph built
  once by a forward pass with x, w, b requiring grad -- *only the backward is timed*.
* NumPy baseline: a plain (DLFS-style) im2col with one strided copy per kernel tap, ``np.matmul``
  and a slice-adding col2im.

Every result is checked once against the NumPy baseline (max abs error over max abs value) so
that a fast wrong kernel cannot pass unnoticed; a mismatch is flagged in the table.

Usage::

    python benchmarks/bench_conv.py                  # all layers, ~ several minutes
    python benchmarks/bench_conv.py --quick          # LeNet layers + 2 small ones, few repeats
    python benchmarks/bench_conv.py --layers vgg,resnet --algos auto --passes fwd
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import (
    CONV_LAYERS,
    QUICK_LAYERS,
    RESULTS_DIR,
    fmt_num,
    format_table,
    import_torch,
    machine_info,
    measure_group,
    print_machine,
    set_threads,
    write_json,
)

import nbconv
from nbconv._checks.conv import geometry as _geometry
from nbconv.conv import plan as _plan

LAYERS = CONV_LAYERS
LENET = ("lenet_c1", "lenet_c2")
ALGOS = ("direct", "im2col", "winograd", "auto")
TARGETS = {"forward_lenet": 1.0, "forward_other": 1.25, "backward": 1.5}
#: relative error (max |a - ref| / max |ref|) above which a result is flagged as wrong.
CHECK_TOL = 1e-3
#: a ratio whose per-round values differ by more than this factor is flagged as noisy.
NOISY = 1.5


# --------------------------------------------------------------------------- NumPy baseline


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def np_conv2d(x, w, b, stride, pad, groups):
    """Plain NumPy im2col + matmul forward (the baseline and the correctness reference)."""
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    OH, OW = _out(H, kh, stride, pad), _out(W, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.empty((N, C, kh, kw, OH, OW), x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j] = xp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
    cols = col.reshape(N, groups, Cg * kh * kw, OH * OW)
    y = np.matmul(w.reshape(groups, F // groups, Cg * kh * kw)[None], cols)
    y = y.reshape(N, F, OH, OW)
    y += b[None, :, None, None]
    return y


def np_conv2d_backward(dy, x, w, stride, pad, groups):
    """Plain NumPy backward: (dx, dw, db), im2col + matmul + slice-adding col2im."""
    N, C, H, W = x.shape
    F, Cg, kh, kw = w.shape
    OH, OW = dy.shape[2:]
    K = Cg * kh * kw
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.empty((N, C, kh, kw, OH, OW), x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j] = xp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
    cols = col.reshape(N, groups, K, OH * OW)
    dy4 = dy.reshape(N, groups, F // groups, OH * OW)
    dw = np.matmul(dy4, cols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    w3 = w.reshape(groups, F // groups, K)
    dcol = np.matmul(w3.transpose(0, 2, 1)[None], dy4).reshape(N, C, kh, kw, OH, OW)
    dxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += dcol[:, :, i, j]
    dx = dxp[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def rel_err(a, ref) -> float:
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = float(np.max(np.abs(ref))) or 1.0
    return float(np.max(np.abs(a - ref))) / scale


# --------------------------------------------------------------------------- one layer


def layer_flops(spec) -> int:
    N, C, F, H, k, s, p, g = spec
    OH = _out(H, k, s, p)
    return 2 * N * F * OH * OH * (C // g) * k * k


def auto_choice(x, w, stride, pad, groups, backward=False):
    """Which algorithm ``algorithm="auto"`` picks for the forward (or backward) pass (private
    API; None if it cannot be asked)."""
    try:

        g = _geometry("conv2d", x.shape, w.shape, stride, pad, 1, groups, "zeros", "")
        return _plan.choose_algorithm("conv2d", "auto", x.shape[1], w.shape[2], w.shape[3], g,
                                       w.shape[0], backward=backward)
    except Exception:  # noqa: BLE001 - informational only
        return None


def traced_peak_mib(fn) -> float:
    """Peak of NumPy/Python allocations during one ``fn()`` (MiB, includes the outputs).

    Buffers that numba kernels allocate themselves are not seen by tracemalloc."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def bench_layer(name, spec, torch, algos, passes, timing, numpy_baseline, peak) -> dict:
    N, C, F, H, k, s, p, g = spec
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((F, C // g, k, k), dtype=np.float32)
         / np.float32(np.sqrt(C // g * k * k)))
    b = rng.standard_normal(F, dtype=np.float32)
    OH = _out(H, k, s, p)
    dy = rng.standard_normal((N, F, OH, OH), dtype=np.float32)
    flops = layer_flops(spec)
    res = {
        "name": name,
        "shape": dict(N=N, C=C, F=F, H=H, W=H, k=k, stride=s, pad=p, groups=g, OH=OH, OW=OH),
        "gflop_forward": flops / 1e9,
        "gflop_backward": 2 * flops / 1e9,
        "auto_algorithm": auto_choice(x, w, s, p, g),
        "auto_algorithm_backward": auto_choice(x, w, s, p, g, backward=True),
    }
    ref_f = np_conv2d(x, w, b, s, p, g) if "fwd" in passes else None
    ref_b = np_conv2d_backward(dy, x, w, s, p, g) if "bwd" in passes else None

    for pss in passes:
        key = "forward" if pss == "fwd" else "backward"
        gflop = flops / 1e9 * (1 if pss == "fwd" else 2)
        fns, checks, first = {}, {}, {}
        if torch is not None:
            xt, wt, bt = (torch.from_numpy(a.copy()) for a in (x, w, b))
            if pss == "fwd":
                def tfn(xt=xt, wt=wt, bt=bt):
                    with torch.no_grad():
                        return torch.nn.functional.conv2d(xt, wt, bt, s, p, 1, g)
            else:
                for t in (xt, wt, bt):
                    t.requires_grad_(True)
                yt = torch.nn.functional.conv2d(xt, wt, bt, s, p, 1, g)
                dyt = torch.from_numpy(dy)

                def tfn(yt=yt, xt=xt, wt=wt, bt=bt, dyt=dyt):
                    return torch.autograd.grad(yt, (xt, wt, bt), dyt, retain_graph=True)
            fns["torch"] = tfn
        for algo in algos:
            if algo == "winograd" and not (s == 1 and g == 1 and 2 <= k <= 9):
                continue  # Winograd covers stride 1, groups 1, kernels of 2 to 9 taps
            if pss == "fwd":
                def fn(algo=algo):
                    return nbconv.conv2d(x, w, b, s, p, groups=g, algorithm=algo)
            else:
                def fn(algo=algo):
                    return nbconv.conv2d_backward(dy, x, w, s, p, 1, g, bias=True,
                                                  algorithm=algo)
            fns[algo] = fn
        if numpy_baseline:
            if pss == "fwd":
                def nfn():
                    return np_conv2d(x, w, b, s, p, g)
            else:
                def nfn():
                    return np_conv2d_backward(dy, x, w, s, p, g)
            fns["numpy"] = nfn
        # first (checked) call of each contender: compiles, warms up, validates
        for c, fn in fns.items():
            t0 = time.perf_counter()
            got = fn()
            first[c] = time.perf_counter() - t0
            if c == "numpy":
                checks[c] = None
            elif pss == "fwd":
                checks[c] = rel_err(got.numpy() if c == "torch" else got, ref_f)
            else:
                checks[c] = max(rel_err(a.numpy() if c == "torch" else a, r)
                                for a, r in zip(got, ref_b))
        stats = measure_group(fns, **timing, first_s=first)
        out = {}
        for c, st in stats.items():
            e = out[c] = {
                "ms": st["median_s"] * 1e3, "ms_min": st["min_s"] * 1e3,
                "ms_pooled_median": st["pooled_median_s"] * 1e3,
                "repeats": st["repeats"],
                "round_ms": [t * 1e3 for t in st["round_medians_s"]],
                "gflops": gflop / st["median_s"], "first_call_s": first[c],
                "check_rel_err": checks[c],
                "check_ok": checks[c] is None or checks[c] <= CHECK_TOL,
            }
            if "torch" in stats and c != "torch":
                e["ratio"] = st["median_s"] / stats["torch"]["median_s"]
                e["ratio_of_mins"] = st["min_s"] / stats["torch"]["min_s"]
                e["round_ratios"] = [a / t for a, t in zip(st["round_medians_s"],
                                                           stats["torch"]["round_medians_s"])]
                e["noisy"] = max(e["round_ratios"]) > NOISY * min(e["round_ratios"])
            if peak and c in ("im2col", "auto"):
                e["peak_traced_mib"] = traced_peak_mib(fns[c])
        if "auto" in out and "ratio" in out["auto"]:
            target = (TARGETS["backward"] if pss == "bwd" else
                      TARGETS["forward_lenet"] if name in LENET else TARGETS["forward_other"])
            out["target_ratio"] = target
            out["auto_meets_target"] = out["auto"]["ratio"] <= target
        res[key] = out
    return res


# --------------------------------------------------------------------------- output


def print_tables(results, algos, passes, have_torch, numpy_baseline) -> None:
    cols = (["torch"] if have_torch else []) + list(algos) + (["numpy"] if numpy_baseline else [])
    for pss in passes:
        key = "forward" if pss == "fwd" else "backward"
        headers = ["layer", "GFLOP"]
        for c in cols:
            headers += [f"{c} ms", f"{c} GF/s"] + (["ratio"] if have_torch and c != "torch"
                                                     else [])
        if have_torch:
            headers += ["auto ratio/round", "target", "ok"]
        headers += ["auto=", "notes"]
        rows = []
        for r in results:
            d = r[key]
            row = [r["name"], fmt_num(r[f"gflop_{key}"], 3)]
            notes = []
            for c in cols:
                e = d.get(c)
                if e is None:  # not applicable to this layer (winograd: stride 1, groups 1)
                    row += ["-", "-"] + (["-"] if have_torch and c != "torch" else [])
                    continue
                row += [fmt_num(e["ms"]), fmt_num(e["gflops"], 1)]
                if have_torch and c != "torch":
                    row.append(fmt_num(e.get("ratio")))
                if e.get("noisy"):
                    notes.append(f"{c} noisy")
                if not e["check_ok"]:
                    notes.append(f"{c} WRONG (rel err {e['check_rel_err']:.1e})")
            if have_torch:
                rr = d.get("auto", {}).get("round_ratios") or []
                row += ["/".join(fmt_num(v) for v in rr) or "-", fmt_num(d.get("target_ratio")),
                        "yes" if d.get("auto_meets_target") else "NO"]
            auto = r["auto_algorithm_backward" if key == "backward" else "auto_algorithm"]
            row += [auto or "?", "; ".join(notes)]
            rows.append(row)
        print(f"conv2d {key} (float32, median ms; ratio = time / PyTorch's, lower is better)")
        print(format_table(headers, rows))
        print()
    peaks = [(r["name"], k, a, r[k][a]["peak_traced_mib"]) for r in results
             for k in ("forward", "backward") if k in r
             for a in ("im2col", "auto") if a in r[k] and "peak_traced_mib" in r[k][a]]
    if peaks:
        worst = max(peaks, key=lambda t: t[3])
        print(f"im2col peak traced allocation (tracemalloc, includes outputs): max "
              f"{worst[3]:.1f} MiB ({worst[0]} {worst[1]} {worst[2]}); bound on one im2col "
              f"buffer: 64 MiB")
        print()


def plot(results, algos, passes, have_torch, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install matplotlib): PNG chart skipped")
        return
    names = [r["name"] for r in results]
    fig, axes = plt.subplots(len(passes), 1, figsize=(max(8, 1.1 * len(names) + 2),
                                                       4.2 * len(passes)), squeeze=False)
    width = 0.8 / len(algos)
    xs = np.arange(len(names))
    for ax, pss in zip(axes[:, 0], passes):
        key = "forward" if pss == "fwd" else "backward"
        for i, a in enumerate(algos):
            vals = [r[key].get(a, {}).get("ratio" if have_torch else "gflops", np.nan)
                    for r in results]
            ax.bar(xs + (i - (len(algos) - 1) / 2) * width, vals, width, label=a)
        if have_torch:
            for lvl, style in ((1.0, "-"), (1.25, "--"), (1.5, ":")):
                ax.axhline(lvl, color="k", linestyle=style, linewidth=0.9,
                           label=f"target {lvl}")
            ax.set_yscale("log")
            ax.set_ylabel("time / PyTorch time")
        else:
            ax.set_ylabel("GFLOP/s")
        ax.set_xticks(xs, names, rotation=30, ha="right")
        ax.set_title(f"conv2d {key}, float32" + (" (lower is better)" if have_torch else ""))
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"PNG written to {path}")


# --------------------------------------------------------------------------- main


def _csv(value: str, allowed, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {bad}; choose from {list(allowed)}")
    return items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"CI smoke run: layers {QUICK_LAYERS} (unless --layers), 3 repeats, "
                         "tiny time budget")
    ap.add_argument("--threads", type=int, default=2, help="threads for nbconv and torch (2)")
    ap.add_argument("--layers", type=lambda v: _csv(v, LAYERS, "layer"), default=None,
                    help="comma-separated subset of: " + ",".join(LAYERS))
    ap.add_argument("--algos", type=lambda v: _csv(v, ALGOS, "algorithm"), default=list(ALGOS),
                    help="comma-separated subset of direct,im2col,auto (default all)")
    ap.add_argument("--passes", type=lambda v: _csv(v, ("fwd", "bwd"), "pass"),
                    default=["fwd", "bwd"], help="fwd,bwd (default both)")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy im2col baseline")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--min-repeats", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 0.5; 0.02 with --quick)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved measurement rounds (default 3; 1 with --quick)")
    ap.add_argument("--no-peak", action="store_true", help="skip the tracemalloc peak")
    ap.add_argument("--json", default=str(RESULTS_DIR / "conv.json"), help="JSON output path")
    ap.add_argument("--png", default=str(RESULTS_DIR / "conv.png"),
                    help="PNG chart path ('' to skip)")
    args = ap.parse_args(argv)

    layers = args.layers or (QUICK_LAYERS if args.quick else list(LAYERS))
    timing = {
        "min_repeats": args.min_repeats or (3 if args.quick else 5),
        "budget_s": args.budget if args.budget is not None else (0.02 if args.quick else 0.5),
        "rounds": args.rounds or (1 if args.quick else 3),
        "settle_s": 0.0 if args.quick else 0.02,
    }
    torch = None if args.no_torch else import_torch()
    set_threads(args.threads, torch)
    info = machine_info(torch)
    print_machine(info)
    print(f"layers: {', '.join(layers)}; algorithms: {', '.join(args.algos)}\n"
          f"timing: one checked warm-up call each, then >= {timing['min_repeats']} runs and "
          f">= {timing['budget_s']} s per contender in {timing['rounds']} interleaved round(s); "
          "time = median of the round medians\n")

    results = []
    t_start = time.perf_counter()
    for name in layers:
        t0 = time.perf_counter()
        r = bench_layer(name, LAYERS[name], torch, args.algos, args.passes, timing,
                        not args.no_numpy, not args.no_peak)
        results.append(r)
        print(f"  {name:<11} done in {time.perf_counter() - t0:6.1f} s", flush=True)
    print()
    info = machine_info(torch)  # threading layer is known now
    print_tables(results, args.algos, args.passes, torch is not None, not args.no_numpy)

    summary = {}
    if torch is not None:
        for key in ("forward", "backward"):
            met = [r[key]["auto_meets_target"] for r in results
                   if "auto_meets_target" in r.get(key, {})]
            if met:
                summary[f"{key}_auto_meets_all_targets"] = all(met)
                summary[f"{key}_auto_worst_ratio"] = max(
                    r[key]["auto"]["ratio"] for r in results if "auto_meets_target" in r[key])
        if summary:
            print("summary:", ", ".join(f"{k}={fmt_num(v) if isinstance(v, float) else v}"
                                        for k, v in summary.items()))
    wrong = [(r["name"], k, a) for r in results for k in ("forward", "backward") if k in r
             for a, e in r[k].items() if isinstance(e, dict) and not e["check_ok"]]
    summary["wrong_results"] = [" ".join(t) for t in wrong]
    print(f"total {time.perf_counter() - t_start:.1f} s")
    payload = {
        "benchmark": "conv2d",
        "machine": info,
        "protocol": {
            "dtype": "float32", "threads": args.threads, **timing,
            "statistic": "median of per-round medians",
            "forward_torch": "torch.nn.functional.conv2d under torch.no_grad()",
            "backward": "dx + dweight + dbias; torch: autograd.grad(y, (x, w, b), dy, "
                        "retain_graph=True) after one untimed forward (backward only timed)",
            "ratio": "median nbconv time / median torch time (lower is better); ratio_of_mins "
                     "and per-round ratios are also stored; noisy: round ratios differ by more "
                     f"than {NOISY}x",
            "gflop": "2*N*F*OH*OW*(C/groups)*kh*kw (backward: twice that)",
            "check": f"max|out - numpy baseline| / max|baseline| <= {CHECK_TOL}",
        },
        "targets": TARGETS,
        "quick": args.quick,
        "layers": results,
        "summary": summary,
    }
    write_json(args.json, payload)
    if args.png:
        plot(results, args.algos, args.passes, torch is not None, args.png)
    if wrong:
        print("WRONG RESULTS:", ", ".join(summary["wrong_results"]))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
