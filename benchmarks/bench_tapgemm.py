"""Tap-GEMM vs nbconv's "auto" vs PyTorch on the small-map convolutions of CIFAR-sized networks.

The layers are the convolutions on 8x8 and smaller maps of ``nbconv.models`` resnet18,
googlenet, nin and vgg11 for 3x32x32 inputs (found by a forward pass through each model and
listed in :data:`LAYERS`; GoogLeNet's many 1x1 reductions are represented by a subset).  For
every layer, batch size and pass, float32, on ``--threads`` threads (default 2) for both
libraries, the medians of interleaved rounds (``_common.measure_group``):

* ``tap``: ``nbconv.conv.tapgemm.conv2d_forward`` / ``conv2d_backward`` (dx, dweight,
  dbias) called directly, outputs allocated per call -- no argument checks, no tap trimming,
  no non-finite check (the public API adds those: ``api_us`` in the JSON is its cost on a 1x1
  problem);
* ``auto``: ``nbconv.conv2d(..., algorithm="auto")`` / ``nbconv.conv2d_backward(...,
  bias=True)`` (which trims taps that read only padding first; ``algo`` names its choice);
* ``torch``: ``F.conv2d`` under ``no_grad`` / ``torch.autograd.grad`` of a graph built once.

Ratios are the medians of per-round ratios (the contenders of a round run back to back), which
other work on a shared machine disturbs less than a ratio of overall medians.

Every tap-GEMM result is checked once against auto's (max abs error / max abs value).

Usage::

    python benchmarks/bench_tapgemm.py                   # every layer, batches 32 and 128
    python benchmarks/bench_tapgemm.py --batches 32 --models nin --passes fwd
    python benchmarks/bench_tapgemm.py --layers "resnet18 512->512,nin 96->96"  # rerun rows
    python benchmarks/bench_tapgemm.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import (
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
from nbconv.conv import tapgemm as _tapgemm

#: (model, C, F, H=W, k, stride, pad): the convolutions on maps of 8x8 and smaller
LAYERS = [
    ("resnet18", 64, 64, 8, 3, 1, 1),
    ("resnet18", 64, 128, 8, 3, 2, 1),
    ("resnet18", 64, 128, 8, 1, 2, 0),
    ("resnet18", 128, 128, 4, 3, 1, 1),
    ("resnet18", 128, 256, 4, 3, 2, 1),
    ("resnet18", 128, 256, 4, 1, 2, 0),
    ("resnet18", 256, 256, 2, 3, 1, 1),
    ("resnet18", 256, 512, 2, 3, 2, 1),
    ("resnet18", 256, 512, 2, 1, 2, 0),
    ("resnet18", 512, 512, 1, 3, 1, 1),
    ("googlenet", 64, 64, 8, 1, 1, 0),
    ("googlenet", 64, 192, 8, 3, 1, 1),
    ("googlenet", 192, 96, 4, 1, 1, 0),
    ("googlenet", 192, 16, 4, 1, 1, 0),
    ("googlenet", 96, 128, 4, 3, 1, 1),
    ("googlenet", 16, 32, 4, 5, 1, 2),
    ("googlenet", 128, 192, 4, 3, 1, 1),
    ("googlenet", 32, 96, 4, 5, 1, 2),
    ("googlenet", 256, 128, 4, 1, 1, 0),
    ("googlenet", 480, 96, 2, 1, 1, 0),
    ("googlenet", 512, 24, 2, 1, 1, 0),
    ("googlenet", 96, 208, 2, 3, 1, 1),
    ("googlenet", 160, 320, 2, 3, 1, 1),
    ("googlenet", 24, 64, 2, 5, 1, 2),
    ("googlenet", 32, 128, 2, 5, 1, 2),
    ("googlenet", 528, 256, 2, 1, 1, 0),
    ("googlenet", 832, 384, 1, 1, 1, 0),
    ("googlenet", 192, 384, 1, 3, 1, 1),
    ("googlenet", 48, 128, 1, 5, 1, 2),
    ("nin", 96, 96, 6, 1, 1, 0),
    ("nin", 96, 256, 3, 5, 1, 2),
    ("nin", 256, 256, 3, 1, 1, 0),
    ("nin", 256, 384, 2, 3, 1, 1),
    ("nin", 384, 384, 2, 1, 1, 0),
    ("nin", 384, 10, 1, 3, 1, 1),
    ("vgg11", 128, 256, 8, 3, 1, 1),
    ("vgg11", 256, 256, 8, 3, 1, 1),
    ("vgg11", 256, 512, 4, 3, 1, 1),
    ("vgg11", 512, 512, 4, 3, 1, 1),
    ("vgg11", 512, 512, 2, 3, 1, 1),
]
MODELS = ("resnet18", "googlenet", "nin", "vgg11")
#: a contender whose round medians differ by more than this factor marks its row noisy ("~")
NOISY = 1.5


def layer_name(model, C, F, H, k, s, p):
    return f"{model} {C}->{F} {H}x{H} k{k}" + (f" s{s}" if s != 1 else "")


def _auto_algorithm(x, w, stride, pad, backward):
    """The algorithm "auto" runs, from the layer's plan (``nbconv.conv.explain``), with the
    kernel size left after tap trimming; "?" when the internals have moved."""
    try:
        from nbconv._checks.conv import geometry
        from nbconv.conv import convplan, explain

        plans = explain(x.shape, w.shape, stride=stride, padding=pad, dtype=x.dtype)
        algo = (plans.backward if backward else plans.forward).algorithm
        g = geometry("conv2d", x.shape, w.shape, stride, pad, 1, 1, "zeros", "")
        t = convplan.trim_taps(w.shape[2], w.shape[3], g, x.shape[2], x.shape[3])
        if t is not None:
            r0, r1, c0, c1 = t[0]
            return f"{algo}@{r1 - r0}x{c1 - c0}"
        return algo
    except Exception:  # noqa: BLE001 - a benchmark label only
        return "?"


def _rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def contenders(torch, x, w, b, dy, stride, pad, passes):
    """``{pass: {name: callable}}`` and the tap-vs-auto error per pass."""
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    OH, OW = dy.shape[2:]
    from nbconv._checks.conv import Geom

    args = (Geom.of(x.shape, w.shape, stride, pad),)

    def tap_fwd():
        y = np.empty((N, F, OH, OW), dtype=x.dtype)
        _tapgemm.conv2d_forward(x, w, b, y, *args)
        return y

    def tap_bwd():
        dx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        _tapgemm.conv2d_backward(dy, x, w, dx, gw, gb, *args)
        return dx, gw, gb

    def auto_fwd():
        return nbconv.conv2d(x, w, b, stride=stride, padding=pad)

    def auto_bwd():
        return nbconv.conv2d_backward(dy, x, w, stride=stride, padding=pad, bias=True)

    fns, errs = {}, {}
    if "fwd" in passes:
        fns["fwd"] = {"tap": tap_fwd, "auto": auto_fwd}
        errs["fwd"] = _rel_err(tap_fwd(), auto_fwd())
    if "bwd" in passes:
        fns["bwd"] = {"tap": tap_bwd, "auto": auto_bwd}
        errs["bwd"] = max(_rel_err(a, r) for a, r in zip(tap_bwd(), auto_bwd()))
    if torch is not None:
        tf = torch.nn.functional
        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
        if "fwd" in passes:
            def torch_fwd():
                with torch.no_grad():
                    return tf.conv2d(xt, wt, bt, stride=stride, padding=pad)
            fns["fwd"]["torch"] = torch_fwd
        if "bwd" in passes:
            xg, wg, bg = (t.clone().requires_grad_(True) for t in (xt, wt, bt))
            yg = tf.conv2d(xg, wg, bg, stride=stride, padding=pad)

            def torch_bwd():
                return torch.autograd.grad(yg, (xg, wg, bg), dyt, retain_graph=True)
            fns["bwd"]["torch"] = torch_bwd
    for group in fns.values():
        for fn in group.values():
            fn()  # warm: compiled, caches filled
    return fns, errs


def api_overhead_us():
    """Median µs of a public ``nbconv.conv2d`` call on a 1x1x1x1 problem (checks, dispatch)."""
    x = np.ones((1, 1, 1, 1), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    nbconv.conv2d(x, w)
    times = []
    for _ in range(2000):
        t0 = time.perf_counter()
        nbconv.conv2d(x, w)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads for nbconv and torch (2)")
    ap.add_argument("--batches", default="32,128", help="comma-separated batch sizes")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    ap.add_argument("--passes", default="fwd,bwd", help="fwd, bwd or both")
    ap.add_argument("--layers", default=None,
                    help="comma-separated substrings: only layers whose name holds one, e.g. "
                         "'resnet18 512->512,nin 96->96'")
    # many short rounds: a burst of other work spoils a few rounds, not the median ratio
    ap.add_argument("--min-repeats", type=int, default=11)
    ap.add_argument("--budget", type=float, default=0.25, help="seconds per contender (0.25)")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--table", default=None, metavar="JSON",
                    help="only print the table of a JSON file written before")
    a = ap.parse_args(argv)
    passes = a.passes.split(",")
    if a.table:
        with open(a.table) as f:
            saved = json.load(f)
        print_machine(saved["machine"])
        print(format_table(_headers(passes), [_cells(r, passes) for r in saved["results"]]))
        return
    torch = None if a.no_torch else import_torch(a.threads)
    set_threads(a.threads, torch)
    batches = [int(v) for v in a.batches.split(",")]
    models = a.models.split(",")
    rng = np.random.default_rng(0)
    results = []
    for model, C, F, H, k, s, p in LAYERS:
        name = layer_name(model, C, F, H, k, s, p)
        if model not in models or (a.layers and not any(v in name
                                                        for v in a.layers.split(","))):
            continue
        for N in batches:
            OH = (H + 2 * p - k) // s + 1
            x = rng.standard_normal((N, C, H, H)).astype(np.float32)
            w = (rng.standard_normal((F, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
            b = rng.standard_normal(F).astype(np.float32)
            dy = rng.standard_normal((N, F, OH, OH)).astype(np.float32)
            fns, errs = contenders(torch, x, w, b, dy, s, p, passes)
            row = {"layer": name, "model": model, "N": N, "C": C,
                   "F": F, "H": H, "k": k, "stride": s, "pad": p}
            for ps, group in fns.items():
                stats = measure_group(group, min_repeats=a.min_repeats, budget_s=a.budget,
                                      rounds=a.rounds)
                row[ps] = {n: st["median_s"] * 1e3 for n, st in stats.items()}
                # ratios per round (contenders measured side by side), then their median:
                # steadier than a ratio of medians when other work comes and goes
                rm = {n: np.array(st["round_medians_s"]) for n, st in stats.items()}
                row[ps]["tap/auto"] = float(np.median(rm["tap"] / rm["auto"]))
                if "torch" in rm:
                    row[ps]["tap/torch"] = float(np.median(rm["tap"] / rm["torch"]))
                row[ps]["tap/auto_min"] = stats["tap"]["min_s"] / stats["auto"]["min_s"]
                row[ps]["noisy"] = bool(max(v.max() / v.min() for v in rm.values()) > NOISY)
                row[ps]["algo"] = _auto_algorithm(x, w, s, p, ps == "bwd")
                row[ps]["err"] = errs[ps]
            results.append(row)
            print(_format_row(row, passes), flush=True)
    info = machine_info(torch)
    print()
    print_machine(info)
    print(format_table(_headers(passes), [_cells(r, passes) for r in results]))
    api = api_overhead_us()
    print(f"\nms, medians of {a.rounds} interleaved rounds, float32, {a.threads} threads; "
          "ratios are medians of per-round ratios; tap/auto < 1 means tap-GEMM is faster; "
          f"tap = driver call only (the public API adds about {api:.0f} us of checks); "
          "(min) = ratio of the fastest runs, the steadier figure on a loaded machine; "
          f"* = tap/auto error above 1e-4; ~ = noisy (round medians differ > {NOISY}x)")
    if a.json:
        write_json(a.json, {"machine": info, "api_us": api, "results": results})


def _headers(passes):
    h = ["layer", "N"]
    for ps in passes:
        h += [f"{ps} tap", "auto", "torch", "tap/auto", "(min)", "tap/torch", "auto algo"]
    return h


def _cells(r, passes):
    cells = [r["layer"], r["N"]]
    for ps in passes:
        d = r[ps]
        t, au, to = d["tap"], d["auto"], d.get("torch")
        flag = ("*" if d["err"] > 1e-4 else "") + ("~" if d["noisy"] else "")
        cells += [fmt_num(t) + flag, fmt_num(au), fmt_num(to), fmt_num(d["tap/auto"]),
                  fmt_num(d["tap/auto_min"]), fmt_num(d["tap/torch"]) if to else "-",
                  d["algo"]]
    return cells


def _format_row(r, passes):
    return "  ".join(str(c) for c in _cells(r, passes))


if __name__ == "__main__":
    main()
