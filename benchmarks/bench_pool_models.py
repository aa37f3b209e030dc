"""Pooling layers of the CIFAR-sized models: nbconv against PyTorch CPU, layer by layer.

The pooling layers (``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``, ``GlobalAvgPool2d``)
of googlenet, resnet18, alexnet, vgg11, nin and simple_convnet on 3x32x32 input are found by
running each model once (batch 1, eval) and recording every pooling layer's input shape and
hyperparameters; identical layers are timed once and counted (``uses`` = how many times one
training step runs that shape).  Then, at batch 32 and 128, float32, for every shape:

* ``train fwd``: the nbconv layer's ``forward`` in training mode (records the argmax) against
  ``torch.nn.functional`` on an input with ``requires_grad`` (PyTorch then also records it);
* ``bwd``: the nbconv layer's ``backward(dy)`` after that forward against PyTorch's backward
  kernel called directly (``aten.max_pool2d_with_indices_backward``,
  ``aten._adaptive_avg_pool2d_backward``, ``aten.avg_pool2d_backward``): no autograd overhead;
* ``eval fwd``: the layer's ``forward`` in eval mode under ``nbconv.no_grad()`` against
  PyTorch under ``torch.inference_mode()``.

Every contender's result is checked against the other library before timing (values and,
for max pooling, the gradient).  Both libraries on the same threads (2 by default),
contenders interleaved in rounds, medians of per-round medians (``_common.measure_group``).
Reported: milliseconds and the ratio nbconv / PyTorch (lower is better), by default of the
medians; ``--stat min`` prints the fastest runs instead (the JSON always has both), which is
the figure to trust on a loaded machine.

Usage::

    python benchmarks/bench_pool_models.py [--quick] [--models googlenet,nin] [--batch 32,128]
                                           [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse

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
from nbconv import models, nn

#: name -> builder of the CIFAR-sized model (3x32x32 input)
MODELS = {
    "googlenet": lambda: models.googlenet(in_channels=3),
    "resnet18": lambda: models.resnet18(in_channels=3),
    "alexnet": lambda: models.alexnet(in_channels=3),
    "vgg11": lambda: models.vgg11(in_channels=3),
    "nin": lambda: models.nin(in_channels=3),
    "simple_convnet": lambda: models.simple_convnet(input_dim=(3, 32, 32)),
}
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.GlobalAvgPool2d)


def _hyper(layer) -> tuple:
    return (type(layer).__name__, repr(sorted(layer._config.items())))


def pool_layers(names) -> list[dict]:
    """The distinct pooling layers of the models ``names``: kind, config, (C, H, W), uses."""
    found: dict = {}
    originals = {cls: cls.forward for cls in POOLS}

    def spy(cls, model):
        orig = originals[cls]

        def forward(self, x):
            key = (_hyper(self), tuple(np.shape(x)[1:]))
            entry = found.setdefault(key, {"kind": type(self).__name__,
                                           "config": dict(self._config),
                                           "chw": tuple(np.shape(x)[1:]), "uses": {}})
            entry["uses"][model] = entry["uses"].get(model, 0) + 1
            return orig(self, x)
        return forward

    try:
        for name in names:
            for cls in POOLS:
                cls.forward = spy(cls, name)
            net = MODELS[name]()
            net.eval()
            with nbconv.no_grad():
                net.forward(np.zeros((1, 3, 32, 32), np.float32))
    finally:
        for cls, f in originals.items():
            cls.forward = f
    return list(found.values())


def _label(e) -> str:
    c = e["config"]
    if e["kind"] == "MaxPool2d":
        s = c["stride"] if c["stride"] is not None else c["kernel_size"]
        extra = ", ceil" if c["ceil_mode"] else ""
        hyper = f"k{c['kernel_size']} s{s} p{c['padding']}{extra}"
    elif e["kind"] == "AdaptiveAvgPool2d":
        hyper = f"out {c['output_size']}"
    else:
        hyper = ", ".join(f"{k}={v}" for k, v in c.items())
    C, H, W = e["chw"]
    return f"{e['kind']}({hyper}) {C}x{H}x{W}"


def _pair(v) -> list:
    return [v, v] if isinstance(v, int) else list(v)


def _torch_calls(torch, e, x_np, dy_np):
    """Zero-argument callables (train forward, backward, eval forward) and the reference
    outputs (y, dx) of PyTorch for pooling entry ``e``."""
    F = torch.nn.functional
    aten = torch.ops.aten
    c = e["config"]
    x = torch.from_numpy(x_np)
    xg = x.clone().requires_grad_(True)
    dy = torch.from_numpy(dy_np)
    if e["kind"] == "MaxPool2d":
        k, d, ceil = c["kernel_size"], c["dilation"], c["ceil_mode"]
        s = c["stride"] if c["stride"] is not None else k
        p = c["padding"]
        y, idx = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)

        def fwd():
            return F.max_pool2d(xg, k, s, p, d, ceil_mode=ceil)

        def bwd():
            return aten.max_pool2d_with_indices_backward(dy, x, _pair(k), _pair(s), _pair(p),
                                                         _pair(d), ceil, idx)

        def inf():
            with torch.inference_mode():
                return F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
    elif e["kind"] == "AdaptiveAvgPool2d":
        out = c["output_size"]

        def fwd():
            return F.adaptive_avg_pool2d(xg, out)

        def bwd():
            return aten._adaptive_avg_pool2d_backward(dy, x)

        def inf():
            with torch.inference_mode():
                return F.adaptive_avg_pool2d(x, out)
    elif e["kind"] == "GlobalAvgPool2d":
        def fwd():
            return xg.mean((2, 3), keepdim=True)

        def bwd():
            return aten._adaptive_avg_pool2d_backward(dy, x)

        def inf():
            with torch.inference_mode():
                return x.mean((2, 3), keepdim=True)
    else:  # AvgPool2d
        k, p, ceil, cip = (c["kernel_size"], c["padding"], c["ceil_mode"],
                           c["count_include_pad"])
        s = c["stride"] if c["stride"] is not None else k

        def fwd():
            return F.avg_pool2d(xg, k, s, p, ceil, cip)

        def bwd():
            return aten.avg_pool2d_backward(dy, x, _pair(k), _pair(s), _pair(p), ceil, cip, None)

        def inf():
            with torch.inference_mode():
                return F.avg_pool2d(x, k, s, p, ceil, cip)
    ref_y = inf().numpy()
    ref_dx = bwd().numpy()
    return (fwd, bwd, inf), (ref_y, ref_dx)


def _nbconv_calls(e, x, dy):
    cls = getattr(nn, e["kind"])
    layer = cls(**e["config"])
    layer.train()
    layer.forward(x)

    def fwd():
        return layer.forward(x)

    def bwd():
        return layer.backward(dy)

    infer = cls(**e["config"])  # its own layer: an eval forward drops the training cache
    infer.eval()

    def inf():
        with nbconv.no_grad():
            return infer.forward(x)

    return (fwd, bwd, inf), layer


def time_entry(e, batch, torch, timing, rng, stat="median") -> dict:
    C, H, W = e["chw"]
    x = rng.standard_normal((batch, C, H, W), dtype=np.float32)
    (nf, nb, ni), layer = _nbconv_calls(e, x, None)
    y = nf()
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    (nf, nb, ni), layer = _nbconv_calls(e, x, dy)
    res = {"label": _label(e), "kind": e["kind"], "config": e["config"], "batch": batch,
           "shape": [batch, C, H, W], "out_shape": list(y.shape), "uses": e["uses"]}
    fns = {"nbconv fwd": nf, "nbconv bwd": nb, "nbconv eval": ni}
    if torch is not None:
        (tf, tb, ti), (ref_y, ref_dx) = _torch_calls(torch, e, x, dy)
        ok_y = np.allclose(ni(), ref_y, rtol=1e-5, atol=1e-6) and np.allclose(nf(), ref_y,
                                                                              rtol=1e-5,
                                                                              atol=1e-6)
        nf()
        ok_dx = np.allclose(nb(), ref_dx, rtol=1e-5, atol=1e-5)
        res["check_ok"] = bool(ok_y and ok_dx)
        fns.update({"torch fwd": tf, "torch bwd": tb, "torch eval": ti})
    for f in fns.values():
        f()
    stats = measure_group(fns, **timing)
    field = {"median": "median_s", "min": "min_s"}[stat]
    for key, part in (("fwd", "train_forward"), ("bwd", "backward"), ("eval", "eval_forward")):
        nb = stats[f"nbconv {key}"]
        r = {"nbconv_ms": nb[field] * 1e3, "nbconv_median_ms": nb["median_s"] * 1e3,
             "nbconv_min_ms": nb["min_s"] * 1e3}
        if torch is not None:
            tt = stats[f"torch {key}"]
            r.update(torch_ms=tt[field] * 1e3, torch_median_ms=tt["median_s"] * 1e3,
                     torch_min_ms=tt["min_s"] * 1e3)
            r["ratio"] = r["nbconv_ms"] / r["torch_ms"]
            r["ratio_median"] = nb["median_s"] / tt["median_s"]
            r["ratio_min"] = nb["min_s"] / tt["min_s"]
        res[part] = r
    return res


def print_table(results, have_torch) -> None:
    rows = []
    for r in results:
        row = [r["label"], r["batch"], sum(r["uses"].values())]
        for part in ("train_forward", "backward", "eval_forward"):
            p = r[part]
            row += [fmt_num(p["nbconv_ms"], 3)]
            if have_torch:
                row += [fmt_num(p["torch_ms"], 3), fmt_num(p["ratio"])]
        if have_torch:
            row.append("ok" if r["check_ok"] else "MISMATCH")
        rows.append(row)
    heads = ["layer (C x H x W)", "N", "uses"]
    for part in ("fwd", "bwd", "eval"):
        heads += [f"nb {part} ms"] + ([f"torch {part} ms", "ratio"] if have_torch else [])
    if have_torch:
        heads.append("check")
    print(format_table(heads, rows))
    if have_torch:
        # the time of one training step's pooling (forward + backward, every use) per model
        print()
        tot = {}
        for r in results:
            for m, u in r["uses"].items():
                t = tot.setdefault((m, r["batch"]), [0.0, 0.0, 0.0, 0.0])
                t[0] += u * (r["train_forward"]["nbconv_ms"])
                t[1] += u * (r["train_forward"]["torch_ms"])
                t[2] += u * (r["backward"]["nbconv_ms"])
                t[3] += u * (r["backward"]["torch_ms"])
        rows = [[m, b, fmt_num(a, 3), fmt_num(bb, 3), fmt_num(a / bb), fmt_num(c, 3),
                 fmt_num(d, 3), fmt_num(c / d)] for (m, b), (a, bb, c, d) in tot.items()]
        print("pooling per training step (sum over the model's pooling layers):")
        print(format_table(["model", "N", "nb fwd ms", "torch fwd ms", "ratio", "nb bwd ms",
                            "torch bwd ms", "ratio"], rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: batch 2, tiny budget")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument("--batch", default="32,128", help="batch sizes (default 32,128)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 0.3; 0.01 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="statistic printed (JSON has both): the median of per-round medians "
                         "(SPEC), or the fastest run, which survives a shared machine's "
                         "scheduling stalls (a descheduled worker thread holds a 2-thread "
                         "kernel for a whole time slice, ~8 ms)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "pool_models.json"), help="JSON output")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    batches = [2] if args.quick else [int(b) for b in args.batch.split(",")]
    timing = {"min_repeats": 2 if args.quick else 7,
              "budget_s": args.budget if args.budget is not None else
              (0.01 if args.quick else 0.3),
              "rounds": args.rounds or (1 if args.quick else 3),
              "settle_s": 0.0 if args.quick else 0.01}
    torch = None if args.no_torch else import_torch()
    set_threads(args.threads, torch)
    print_machine(machine_info(torch))
    rng = np.random.default_rng(0)
    entries = pool_layers(names)
    results = []
    for b in batches:
        for e in entries:
            results.append(time_entry(e, b, torch, timing, rng, args.stat))
    what = "median of per-round medians" if args.stat == "median" else "fastest run"
    print(f"statistic: {args.stat} ({what})")
    print_table(results, torch is not None)
    bad = [f"{r['label']} N={r['batch']}" for r in results if r.get("check_ok") is False]
    payload = {"benchmark": "pool_models", "machine": machine_info(torch),
               "protocol": {"dtype": "float32", "threads": args.threads, **timing,
                            "statistic": args.stat,
                            "statistics_in_results": "*_median_ms (median of per-round "
                                                     "medians), *_min_ms (fastest run)",
                            "input": "3x32x32, pooling layer input shapes of the models"},
               "models": names, "quick": args.quick, "results": results,
               "summary": {"wrong_results": bad}}
    write_json(args.json, payload)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
