"""Transposed convolution layers against PyTorch's, forward + backward.

The cases of issue 27 (float32): a DCGAN generator layer, ``ConvTranspose2d(512, 256, 4,
stride=2, padding=1)`` on (64, 512, 4, 4) -> (64, 256, 8, 8), and a U-Net up-convolution,
``ConvTranspose2d(128, 64, 2, stride=2)`` on (8, 128, 32, 32) -> (8, 64, 64, 64).  Target:
nbconv's forward + backward within 1.25x of PyTorch's time.

One step is ``y = layer(x)`` then the backward pass giving the input gradient and the weight
and bias gradients (nbconv: ``layer.backward(dy)``; PyTorch: ``y.backward(dy)`` with ``x``
requiring a gradient); the forward pass alone is timed under ``no_grad`` as well.  Both
libraries on the same number of threads, in one process, the median of per-round medians
(``_common``), with the outputs and gradients compared before timing.  The plans nbconv runs
are printed under the table (the convolution's backward plan runs the forward pass).

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_conv_transpose.py
    python benchmarks/bench_conv_transpose.py --quick --json /tmp/convt.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import (
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
from nbconv import nn

TARGET = 1.25

#: name -> (N, C_in, C_out, H (= W), kernel, stride, padding)
CASES = {
    "dcgan 512->256 4x4->8x8 k4 s2 p1": (64, 512, 256, 4, 4, 2, 1),
    "unet 128->64 32x32->64x64 k2 s2": (8, 128, 64, 32, 2, 2, 0),
}
#: the same layers, smaller, for --quick (CI smoke runs)
QUICK = {
    "dcgan 512->256 4x4->8x8 k4 s2 p1": (2, 32, 16, 4, 4, 2, 1),
    "unet 128->64 32x32->64x64 k2 s2": (2, 16, 8, 8, 2, 2, 0),
}


def _pair(torch, case, rng):
    n, cin, cout, hw, k, s, p = case
    ours = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p)
    theirs = torch.nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    x = rng.standard_normal((n, cin, hw, hw)).astype(np.float32)
    out = (hw - 1) * s - 2 * p + k
    dy = rng.standard_normal((n, cout, out, out)).astype(np.float32)
    return ours, theirs, x, dy


def _check(torch, ours, theirs, x, dy) -> bool:
    """Outputs, input gradients and weight gradients agree to float32 rounding."""
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    theirs.zero_grad()
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dy))
    ours.zero_grad()
    y = np.asarray(ours(x))
    dx = ours.backward(dy)
    pairs = [(y, yt.detach().numpy()), (dx, xt.grad.numpy()),
             (ours.weight.grad, theirs.weight.grad.numpy()),
             (ours.bias.grad, theirs.bias.grad.numpy())]
    return all(a.shape == b.shape and a.dtype == b.dtype and np.allclose(
        a, b, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(b).max()))) for a, b in pairs)


def _plans(case) -> list[str]:
    """The plans of the convolution from the output to the input (that of the forward pass,
    the backward's dx, and the backward's weight gradient: its backward plan)."""
    n, cin, cout, hw, k, s, p = case
    out = (hw - 1) * s - 2 * p + k
    e = nbconv.conv.explain((n, cout, out, out), (cin, cout, k, k), stride=s, padding=p)
    return [f"forward (data gradient): {e.backward.algorithm} ({e.backward.rule}), kernels "
            f"{e.backward.kernels[0]}",
            f"dx (forward of dy): {e.forward.algorithm} ({e.forward.rule})",
            f"dweight: {e.backward.algorithm}, kernels {e.backward.kernels[1]}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: small inputs, few repeats")
    ap.add_argument("--threads", type=int, default=2, help="threads of both libraries (2)")
    ap.add_argument("--min-repeats", type=int, default=None, help="default 10 (3 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 2.0; 0.02 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (1 with --quick)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "conv_transpose.json"),
                    help="JSON output path")
    args = ap.parse_args(argv)
    torch = import_torch()
    if torch is None:
        raise SystemExit("PyTorch is needed: this benchmark reports ratios to it")
    timing = {
        "min_repeats": args.min_repeats or (3 if args.quick else 10),
        "budget_s": args.budget if args.budget is not None else (0.02 if args.quick else 2.0),
        "rounds": args.rounds or (1 if args.quick else 5),
        "settle_s": 0.0 if args.quick else 0.02,
    }
    set_threads(args.threads, torch)
    info = machine_info(torch)
    print_machine(info)

    rng = np.random.default_rng(0)
    nbconv.manual_seed(0)
    rows, results, notes, ok_all = [], {}, [], True
    for name, case in (QUICK if args.quick else CASES).items():
        ours, theirs, x, dy = _pair(torch, case, rng)
        t0 = time.perf_counter()
        ok = _check(torch, ours, theirs, x, dy)  # (also compiles nbconv's kernels)
        first = time.perf_counter() - t0
        ok_all &= ok
        xt = torch.from_numpy(x).requires_grad_(True)
        xt_plain, dyt = torch.from_numpy(x), torch.from_numpy(dy)

        def nb_step(ours=ours, x=x, dy=dy):
            ours.zero_grad()
            ours(x)
            ours.backward(dy)

        def torch_step(theirs=theirs, xt=xt, dyt=dyt):
            theirs.zero_grad()
            xt.grad = None
            theirs(xt).backward(dyt)

        def nb_fwd(ours=ours, x=x):
            with nbconv.no_grad():
                ours(x)

        def torch_fwd(theirs=theirs, xt=xt_plain):
            with torch.no_grad():
                theirs(xt)

        for fn in (nb_step, torch_step, nb_fwd, torch_fwd):
            fn()
        st = measure_group({"nbconv": nb_step, "torch": torch_step}, **timing)
        sf = measure_group({"nbconv": nb_fwd, "torch": torch_fwd}, **timing)
        ratio = st["nbconv"]["median_s"] / st["torch"]["median_s"]
        ratio_f = sf["nbconv"]["median_s"] / sf["torch"]["median_s"]
        n, cin, cout, hw, k, s, p = case
        out = (hw - 1) * s - 2 * p + k
        plans = _plans(case)
        notes.append(f"{name}: " + "; ".join(plans))
        results[name] = {
            "case": dict(N=n, C_in=cin, C_out=cout, H=hw, W=hw, k=k, stride=s, padding=p,
                         H_out=out, W_out=out),
            "matches_torch": ok, "nbconv_first_call_s": first, "plans": plans,
            "step": {"nbconv_ms": st["nbconv"]["median_s"] * 1e3,
                     "torch_ms": st["torch"]["median_s"] * 1e3, "ratio": ratio,
                     "round_ratios": [a / b for a, b in zip(st["nbconv"]["round_medians_s"],
                                                            st["torch"]["round_medians_s"])],
                     "timings": st},
            "forward": {"nbconv_ms": sf["nbconv"]["median_s"] * 1e3,
                        "torch_ms": sf["torch"]["median_s"] * 1e3, "ratio": ratio_f,
                        "timings": sf},
            "target_ratio": TARGET,
            "meets_target": ratio <= TARGET,
        }
        rows.append([name, f"{n}x{cin}x{hw}x{hw}", fmt_num(st["torch"]["median_s"] * 1e3, 3),
                     fmt_num(st["nbconv"]["median_s"] * 1e3, 3), fmt_num(ratio, 2),
                     fmt_num(sf["torch"]["median_s"] * 1e3, 3),
                     fmt_num(sf["nbconv"]["median_s"] * 1e3, 3), fmt_num(ratio_f, 2),
                     f"<= {TARGET:g}", "yes" if ratio <= TARGET else "NO",
                     "yes" if ok else "NO"])
    print(f"ConvTranspose2d, float32, {args.threads} thread(s) each; ratio = nbconv time / "
          "PyTorch time (lower is better); step = forward + backward (input, weight and bias "
          "gradients)")
    print(format_table(["layer", "input", "torch step ms", "nbconv step ms", "ratio",
                        "torch fwd ms", "nbconv fwd ms", "fwd ratio", "target", "ok",
                        "same result"], rows))
    print("\nnbconv's plans:")
    for line in notes:
        print(f"  {line}")
    print()
    payload = {
        "benchmark": "conv_transpose",
        "machine": info,
        "protocol": {"dtype": "float32", "threads": args.threads, **timing,
                     "statistic": "median of per-round medians",
                     "ratio": "median nbconv time / median PyTorch time",
                     "step": "layer(x) then the backward pass (input, weight and bias "
                             "gradients)"},
        "quick": args.quick,
        "target_ratio": TARGET,
        "results": results,
    }
    write_json(args.json, payload)
    if not ok_all:
        print("RESULTS DIFFER FROM PYTORCH")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
