"""Group, instance and layer normalisation layers against PyTorch's, forward + backward.

The cases of issue 27 (float32): ``GroupNorm(32, 256)`` and ``LayerNorm((256, 16, 16))`` (the
image form of PyTorch's documentation, ``[C, H, W]``) on (32, 256, 16, 16), ``InstanceNorm2d(64)``
on (32, 64, 32, 32); plus, for information, ``LayerNorm(256)`` over the channels of a
channels-last (32, 16, 16, 256) tensor (a ConvNeXt block's form: 8192 rows of 256) and
``InstanceNorm2d(64, affine=True)``.  Target: nbconv no slower than PyTorch (time ratio <= 1)
on the issue's three cases.

One step is ``y = layer(x)`` then the backward pass giving the input gradient and the weight
gradients (nbconv: ``layer.backward(dy)``; PyTorch: ``y.backward(dy)`` with ``x`` requiring a
gradient); the forward pass alone is timed under ``no_grad`` as well.  Both libraries on the
same number of threads, in one process, the median of per-round medians (``_common``), with
the outputs and gradients compared before timing.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_norms.py
    python benchmarks/bench_norms.py --quick --json /tmp/norms.json
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

TARGET = 1.0

#: name -> (layer class, constructor arguments, input shape, part of the target)
CASES = {
    "GroupNorm(32, 256)": ("GroupNorm", (32, 256), {}, (32, 256, 16, 16), True),
    "LayerNorm((256, 16, 16))": ("LayerNorm", ((256, 16, 16),), {}, (32, 256, 16, 16), True),
    "InstanceNorm2d(64)": ("InstanceNorm2d", (64,), {}, (32, 64, 32, 32), True),
    "LayerNorm(256) channels-last": ("LayerNorm", (256,), {}, (32, 16, 16, 256), False),
    "InstanceNorm2d(64, affine)": ("InstanceNorm2d", (64,), {"affine": True},
                                   (32, 64, 32, 32), False),
}
#: the same layers on small inputs for --quick (CI smoke runs)
QUICK = {
    "GroupNorm(32, 256)": ("GroupNorm", (4, 16), {}, (2, 16, 4, 4), True),
    "LayerNorm((256, 16, 16))": ("LayerNorm", ((16, 4, 4),), {}, (2, 16, 4, 4), True),
    "InstanceNorm2d(64)": ("InstanceNorm2d", (8,), {}, (2, 8, 4, 4), True),
}


def _pair(torch, cls, args, kwargs, shape, rng):
    ours = getattr(nn, cls)(*args, **kwargs)
    theirs = getattr(torch.nn, cls)(*args, **kwargs)
    for name, p in ours.named_parameters():  # away from ones/zeros, the same in both
        p.data[...] = rng.standard_normal(p.data.shape).astype(np.float32)
        with torch.no_grad():
            getattr(theirs, name).copy_(torch.from_numpy(p.data))
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
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
    pairs = [(y, yt.detach().numpy()), (dx, xt.grad.numpy())]
    pairs += [(p.grad, getattr(theirs, n).grad.numpy()) for n, p in ours.named_parameters()]
    return all(a.shape == b.shape and a.dtype == b.dtype and np.allclose(
        a, b, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(b).max()))) for a, b in pairs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: small inputs, few repeats")
    ap.add_argument("--threads", type=int, default=2, help="threads of both libraries (2)")
    ap.add_argument("--min-repeats", type=int, default=None, help="default 10 (3 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 1.0; 0.02 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (1 with --quick)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "norms.json"), help="JSON output path")
    args = ap.parse_args(argv)
    torch = import_torch()
    if torch is None:
        raise SystemExit("PyTorch is needed: this benchmark reports ratios to it")
    timing = {
        "min_repeats": args.min_repeats or (3 if args.quick else 10),
        "budget_s": args.budget if args.budget is not None else (0.02 if args.quick else 1.0),
        "rounds": args.rounds or (1 if args.quick else 5),
        "settle_s": 0.0 if args.quick else 0.02,
    }
    set_threads(args.threads, torch)
    info = machine_info(torch)
    print_machine(info)

    rng = np.random.default_rng(0)
    rows, results, ok_all = [], {}, True
    for name, (cls, cargs, ckw, shape, in_target) in (QUICK if args.quick else CASES).items():
        ours, theirs, x, dy = _pair(torch, cls, cargs, ckw, shape, rng)
        t0 = time.perf_counter()
        ok = _check(torch, ours, theirs, x, dy)  # (also compiles nbconv's kernels)
        first = time.perf_counter() - t0
        ok_all &= ok
        xt = torch.from_numpy(x).requires_grad_(True)
        xt_plain = torch.from_numpy(x)
        dyt = torch.from_numpy(dy)

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
        meets = ratio <= TARGET if in_target else None
        results[name] = {
            "layer": cls, "args": list(cargs), "kwargs": ckw, "input_shape": list(shape),
            "in_target": in_target, "matches_torch": ok, "nbconv_first_call_s": first,
            "step": {"nbconv_ms": st["nbconv"]["median_s"] * 1e3,
                     "torch_ms": st["torch"]["median_s"] * 1e3, "ratio": ratio,
                     "round_ratios": [a / b for a, b in zip(st["nbconv"]["round_medians_s"],
                                                            st["torch"]["round_medians_s"])],
                     "timings": st},
            "forward": {"nbconv_ms": sf["nbconv"]["median_s"] * 1e3,
                        "torch_ms": sf["torch"]["median_s"] * 1e3, "ratio": ratio_f,
                        "timings": sf},
            "target_ratio": TARGET if in_target else None,
            "meets_target": meets,
        }
        rows.append([name, "x".join(map(str, shape)),
                     fmt_num(st["torch"]["median_s"] * 1e3, 3),
                     fmt_num(st["nbconv"]["median_s"] * 1e3, 3), fmt_num(ratio, 2),
                     fmt_num(sf["torch"]["median_s"] * 1e3, 3),
                     fmt_num(sf["nbconv"]["median_s"] * 1e3, 3), fmt_num(ratio_f, 2),
                     f"<= {TARGET:g}" if in_target else "-",
                     ("yes" if meets else "NO") if in_target else "-", "yes" if ok else "NO"])
    print(f"normalisation layers, float32, {args.threads} thread(s) each; ratio = nbconv time / "
          "PyTorch time (lower is better); step = forward + backward (input and weight "
          "gradients)")
    print(format_table(["layer", "input", "torch step ms", "nbconv step ms", "ratio",
                        "torch fwd ms", "nbconv fwd ms", "fwd ratio", "target", "ok",
                        "same result"], rows))
    print()
    payload = {
        "benchmark": "norms",
        "machine": info,
        "protocol": {"dtype": "float32", "threads": args.threads, **timing,
                     "statistic": "median of per-round medians",
                     "ratio": "median nbconv time / median PyTorch time",
                     "step": "layer(x) then the backward pass (input and weight gradients)"},
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
