"""The direct algorithm's kernel families against each other, on the layers where it runs.

For every convolution pass that ``algorithm="auto"`` gives to the direct algorithm -- the
layers of the ``nbconv.models`` zoo (found by a forward pass through each model: 3x32x32 at
batch 32, LeNet-5 1x28x28 at batch 64) plus small depthwise, grouped and dilated layers
(:data:`EXTRA`) -- the pass is timed with each kernel family that can run it forced in turn:
``rows`` (general strided row loops), ``wide`` (wide rows), ``pixvec`` (pixel-vector register
blocks; ``phases`` on stride phases for strided or grouped layers), ``regblock``
(filter-vector register blocks) and, for depthwise layers, ``depthwise``.

A family is forced by replacing :func:`nbconv.conv.plan.direct_forward_kernel` /
:func:`~nbconv.conv.plan.direct_backward_kernels` while the layer's plan is made
(``algorithm="direct"``), then pinning that plan in the engine for the timed calls; nothing
in the library changes.  Passes, through the public API, float32, with bias:

* ``fwd``: ``nbconv.conv2d``;
* ``weight``: ``nbconv.conv2d_backward(..., need_dx=False)`` (weight and bias gradients);
* ``data``: ``nbconv.conv2d_backward(...)`` with the data family forced and the weight family
  the one ``auto`` picks, minus the ``weight`` pass of that family measured in the same
  rounds (the row loops on a strided layer take their own weight gradient, on ``dy``
  unspread).

Medians of ``--rounds`` interleaved rounds (``_common.measure_group``), each round at least
one run per contender, ``--threads`` threads (default 2).  Every forced result is checked
against ``auto``'s (``*``: relative error above 1e-4).  Run as a user's machine runs::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_direct_families.py
    python benchmarks/bench_direct_families.py --layers lenet5,dw --passes fwd

The table gives ms per family, ``auto``'s family, the fastest and its lead over the next
(``lead`` = second best / best); the CSV (``--csv``, default
``results/direct_families.csv``) one row per (layer, pass, family).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import numpy as np
from _common import (
    RESULTS_DIR,
    fmt_num,
    format_table,
    machine_info,
    measure_group,
    print_machine,
    set_threads,
)

import nbconv
from nbconv import models
from nbconv.conv import convplan, engine, plan

#: name -> (builder, input shape (C, H, W), batch): the zoo as ``bench_models.py`` runs it
MODELS = {
    "lenet5": (lambda: models.lenet5(activation="relu"), (1, 28, 28), 64),
    "simple_convnet": (lambda: models.simple_convnet(input_dim=(3, 32, 32)), (3, 32, 32), 32),
    "alexnet": (lambda: models.alexnet(in_channels=3), (3, 32, 32), 32),
    "zfnet": (lambda: models.zfnet(in_channels=3), (3, 32, 32), 32),
    "vgg11": (lambda: models.vgg11(in_channels=3), (3, 32, 32), 32),
    "nin": (lambda: models.nin(in_channels=3), (3, 32, 32), 32),
    "googlenet": (lambda: models.googlenet(in_channels=3), (3, 32, 32), 32),
    "resnet18": (lambda: models.resnet18(in_channels=3), (3, 32, 32), 32),
}

#: name -> (x shape, weight shape, stride, padding, dilation, groups): small layers outside the
#: zoo that ``auto`` gives to the direct algorithm
EXTRA = {
    "dw 3x3 56": ((16, 128, 56, 56), (128, 1, 3, 3), 1, 1, 1, 128),
    "dw 3x3 s2": ((16, 64, 56, 56), (64, 1, 3, 3), 2, 1, 1, 64),
    "dw 3x3 x2": ((16, 32, 28, 28), (64, 1, 3, 3), 1, 1, 1, 32),
    "grouped 3x3 g2": ((16, 64, 28, 28), (128, 32, 3, 3), 1, 1, 1, 2),
    "grouped 3x3 g4": ((8, 16, 16, 16), (32, 4, 3, 3), 1, 1, 1, 4),
    "grouped 5x5 g2": ((8, 16, 24, 24), (32, 8, 5, 5), 1, 2, 1, 2),
    "dilated 3x3 d2": ((16, 32, 28, 28), (32, 32, 3, 3), 1, 2, 2, 1),
    "dilated 3x3 d2 C3": ((16, 3, 32, 32), (16, 3, 3, 3), 1, 2, 2, 1),
    "dilated 3x3 d2 F8": ((16, 8, 28, 28), (8, 8, 3, 3), 1, 2, 2, 1),
    "dilated 3x3 d2 g4": ((8, 32, 32, 32), (64, 8, 3, 3), 1, 2, 2, 4),
}

FAMILIES = ("rows", "wide", "pixvec", "regblock", "depthwise")
PASSES = ("fwd", "data", "weight")
#: relative error of a forced result against auto's above which the row is marked "*"
TOLERANCE = 1e-4

# ------------------------------------------------------------------- forcing a family

_FORCE: dict = {"fwd": None, "bwd": None}  # what the plan's family functions return
_PIN: dict = {"forward": None, "backward": None}  # the plan the engine runs
_REAL = {"fwd": plan.direct_forward_kernel, "bwd": plan.direct_backward_kernels,
         "forward": engine.forward_plan, "backward": engine.backward_plan}
_SEEN: dict = {}  # (x shape, weight shape, geometry) of the forward passes run


def _forward_kernel(*args, **kwargs):
    return _FORCE["fwd"] or _REAL["fwd"](*args, **kwargs)


def _backward_kernels(*args, **kwargs):
    return _FORCE["bwd"] or _REAL["bwd"](*args, **kwargs)


def _forward_plan(op, x_shape, weight_shape, g, *args, **kwargs):
    _SEEN.setdefault((tuple(x_shape), tuple(weight_shape), g), op)
    return _PIN["forward"] or _REAL["forward"](op, x_shape, weight_shape, g, *args, **kwargs)


def _backward_plan(op, x_shape, weight_shape, g, *args, **kwargs):
    return _PIN["backward"] or _REAL["backward"](op, x_shape, weight_shape, g, *args,
                                                 **kwargs)


def install():
    """Route the plan's family functions and the engine's plan look-ups through this script."""
    plan.direct_forward_kernel = _forward_kernel
    plan.direct_backward_kernels = _backward_kernels
    engine.forward_plan = _forward_plan
    engine.backward_plan = _backward_plan


def forced_plan(layer, pass_name, force):
    """The plan of ``layer``'s pass (``"forward"``/``"backward"``) with the direct algorithm
    and the families ``force`` (a family name, or a ``plan.DirectBackward``)."""
    _FORCE.update(fwd=force if pass_name == "forward" else None,
                  bwd=force if pass_name == "backward" else None)
    convplan.clear_cache()
    try:
        make = convplan.forward_plan if pass_name == "forward" else convplan.backward_plan
        return make("conv2d", layer["x"], layer["w"], layer["g"], np.float32, "direct")
    finally:
        _FORCE.update(fwd=None, bwd=None)
        convplan.clear_cache()


def auto_plans(layer):
    g = layer["g"]
    return (convplan.forward_plan("conv2d", layer["x"], layer["w"], g, np.float32),
            convplan.backward_plan("conv2d", layer["x"], layer["w"], g, np.float32))


# ------------------------------------------------------------------- which families apply


def _shape_of(p):
    """(C, F, kh, kw, sy, sx, groups) of the layer a plan's driver runs (taps trimmed)."""
    N, C = p.x_shape[:2]
    F, _, kh, kw = p.weight_shape
    if p.taps is not None:
        r0, r1, c0, c1 = p.taps
        kh, kw = r1 - r0, c1 - c0
    g = p.geometry
    return C, F, kh, kw, g.sy, g.sx, g.groups


def forward_families(p):
    """Forward families that can run the layer of plan ``p``: the pixel-vector blocks as
    ``phases`` where the layer is strided or grouped."""
    C, F, kh, kw, sy, sx, groups = _shape_of(p)
    stride1, dwise = sy == sx == 1, plan.depthwise(C, C // groups, groups)
    out = {"rows": "rows"}
    if stride1:
        out["wide"] = "wide"
    if not dwise:
        out["pixvec"] = "pixvec" if stride1 and groups == 1 else "phases"
    if groups == 1:
        out["regblock"] = "regblock"
    if dwise:
        out["depthwise"] = "depthwise"
    return out


def _spreadable(sy, sx):
    return sy * sx <= plan.SPREAD_MAX_STRIDE_AREA


def weight_families(p):
    """Weight-gradient families, as ``plan.DirectBackward`` values (data family ``rows``
    unless the layer's own would do: the weight pass does not compute ``dx``)."""
    C, F, kh, kw, sy, sx, groups = _shape_of(p)
    strided = sy > 1 or sx > 1
    out = {"rows": plan.DirectBackward(False, "rows", "rows")}
    if strided and not _spreadable(sy, sx):
        return out
    for fam in ("wide", "pixvec", "regblock", "depthwise"):
        if fam in ("pixvec", "regblock") and groups != 1:
            continue
        if fam == "depthwise" and not plan.depthwise(C, C // groups, groups):
            continue
        out[fam] = plan.DirectBackward(strided, "wide", fam)
    return out


def data_families(p, auto_backward):
    """Data-gradient families, each with the weight family it runs beside (auto's, or the
    row loops for the row loops on a strided layer) as ``plan.DirectBackward`` values."""
    C, F, kh, kw, sy, sx, groups = _shape_of(p)
    strided = sy > 1 or sx > 1
    weight = auto_backward.kernels[1]
    out = {"rows": plan.DirectBackward(False, "rows", "rows" if strided else weight)}
    if weight == "rows":
        return out
    for fam in ("wide", "pixvec", "depthwise"):
        if fam == "pixvec" and groups != 1:
            continue
        if fam == "depthwise" and not (plan.depthwise(C, C // groups, groups) and F == C):
            continue
        out[fam] = plan.DirectBackward(strided, fam, weight)
    return out


# ------------------------------------------------------------------- the layers


def zoo_layers(names):
    """The zoo's convolutions (one forward pass per model, inference mode)."""
    layers = []
    for name in names:
        build, shape, N = MODELS[name]
        model = build()
        model.eval()
        _SEEN.clear()
        with nbconv.no_grad():
            model(np.zeros((N,) + shape, np.float32))
        for i, (x, w, g) in enumerate(_SEEN):
            layers.append({"name": f"{name} conv{i + 1}", "source": name, "x": x, "w": w,
                           "g": g})
    return layers


def extra_layers():
    from nbconv._checks.conv import geometry

    layers = []
    for name, (x, w, s, p, d, groups) in EXTRA.items():
        g = geometry("conv2d", x, w, s, p, d, groups, "zeros", name)
        layers.append({"name": name, "source": "extra", "x": x, "w": w, "g": g})
    return layers


def describe(layer):
    (N, C, H, W), (F, _, kh, kw), g = layer["x"], layer["w"], layer["g"]
    return {"N": N, "C": C, "F": F, "H": H, "W": W, "kh": kh, "kw": kw, "stride": g.sy,
            "padding": g.pt, "dilation": g.dh, "groups": g.groups}


# ------------------------------------------------------------------- timing


def _arrays(layer, rng):
    (N, C, H, W), (F, Cg, kh, kw), g = layer["x"], layer["w"], layer["g"]
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((F, Cg, kh, kw)) / np.sqrt(Cg * kh * kw)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    dy = rng.standard_normal((N, F, g.OH, g.OW)).astype(np.float32)
    return x, w, b, dy


def _kwargs(layer):
    g = layer["g"]
    return {"stride": (g.sy, g.sx), "padding": (g.pt, g.pl), "dilation": (g.dh, g.dw),
            "groups": g.groups}


def _pinned(pass_name, p, fn):
    def run():
        _PIN[pass_name] = p
        try:
            return fn()
        finally:
            _PIN[pass_name] = None
    return run


def _rel_err(got, want):
    err = 0.0
    for a, b in zip(got, want):
        if a is not None:
            err = max(err, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)))
    return err


def contenders(layer, pass_name, arrays):
    """``{label: (plan, callable)}`` of one pass, and the ``auto`` family's label."""
    x, w, b, dy = arrays
    kw = _kwargs(layer)
    fplan, bplan = auto_plans(layer)

    def fwd():
        return (nbconv.conv2d(x, w, b, algorithm="direct", **kw),)

    def bwd(need_dx):
        def run():
            return nbconv.conv2d_backward(dy, x, w, algorithm="direct", need_dx=need_dx, **kw)
        return run

    out = {}
    if pass_name == "fwd":
        for fam, force in forward_families(fplan).items():
            out[fam] = (forced_plan(layer, "forward", force), fwd)
        auto = fplan.kernels[0]
        return out, ("pixvec" if auto == "phases" else auto)
    if pass_name == "weight":
        for fam, force in weight_families(bplan).items():
            out[fam] = (forced_plan(layer, "backward", force), bwd(False))
        return out, bplan.kernels[1]
    for fam, force in data_families(bplan, bplan).items():
        out[fam] = (forced_plan(layer, "backward", force), bwd(True))
        ref = "weight:" + force.weight
        if ref not in out:
            weight_only = plan.DirectBackward(force.spread, "rows", force.weight)
            out[ref] = (forced_plan(layer, "backward", weight_only), bwd(False))
    return out, bplan.kernels[0]


def time_pass(layer, pass_name, arrays, a):
    """``{family: {"ms", "err", "kernels"}}`` of one pass and auto's family."""
    group, auto = contenders(layer, pass_name, arrays)
    fns, checks = {}, {}
    for label, (p, fn) in group.items():
        run = _pinned("forward" if pass_name == "fwd" else "backward", p, fn)
        checks[label] = run()  # compiles; the result is checked below
        fns[label] = run
    if pass_name == "fwd":
        want = (nbconv.conv2d(arrays[0], arrays[1], arrays[2], **_kwargs(layer)),)
    else:
        want = nbconv.conv2d_backward(arrays[3], arrays[0], arrays[1], **_kwargs(layer))
    stats = measure_group(fns, min_repeats=a.min_repeats, budget_s=a.budget, rounds=a.rounds)
    rounds = {n: np.array(s["round_medians_s"]) * 1e3 for n, s in stats.items()}
    fastest = {n: s["min_s"] * 1e3 for n, s in stats.items()}
    out = {}
    for label, (p, _) in group.items():
        if label.startswith("weight:"):
            continue
        ms, low = rounds[label], fastest[label]
        if pass_name == "data":  # minus the weight gradient it runs beside, round by round
            ms = ms - rounds["weight:" + p.kernels[1]]
            low = low - fastest["weight:" + p.kernels[1]]
        got = checks[label]
        if pass_name == "weight":
            got, want_cmp = got[1:], want[1:]
        elif pass_name == "data":
            got, want_cmp = got[:1], want[:1]
        else:
            want_cmp = want
        out[label] = {"median": float(statistics.median(ms)), "min": float(low),
                      "err": _rel_err(got, want_cmp),
                      "kernels": "/".join(p.kernels) + (" spread" if p.spread else "")}
    return out, auto


# ------------------------------------------------------------------- output


def table_rows(results, stat):
    rows = []
    for r in results:
        t = {f: v[stat] for f, v in r["times"].items()}
        ranked = sorted(t, key=t.get)
        best = ranked[0]
        lead = t[ranked[1]] / t[best] if len(ranked) > 1 else None
        cells = [r["layer"], r["pass"]]
        for fam in FAMILIES:
            if fam in t:
                star = "*" if r["times"][fam]["err"] > TOLERANCE else ""
                cells.append(fmt_num(t[fam], 3) + star)
            else:
                cells.append("")
        cells += [r["auto"], best, fmt_num(lead, 2)]
        rows.append(cells)
    return rows


HEADERS = ["layer", "pass", *FAMILIES, "auto", "best", "lead"]


def write_csv(path, results, info, command):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["layer", "source", "N", "C", "F", "H", "W", "kh", "kw", "stride", "padding",
              "dilation", "groups", "pass", "family", "kernels", "ms", "ms_min", "vs_best", "auto",
              "rel_err", "threads", "machine", "command"]
    machine = (f"{info['cpu']} ({', '.join(info['cpu_flags'])}), {info['cores']} cores, "
               f"load average {info['load_average']}, OpenBLAS "
               f"{(info.get('blas') or {}).get('architecture')} kernels")
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for r in results:
            best = min(v["median"] for v in r["times"].values())
            for fam, v in r["times"].items():
                out.writerow({"layer": r["layer"], "source": r["source"], **r["shape"],
                              "pass": r["pass"], "family": fam, "kernels": v["kernels"],
                              "ms": f"{v['median']:.4f}", "ms_min": f"{v['min']:.4f}",
                              "vs_best": f"{v['median'] / best:.3f}",
                              "auto": r["auto"], "rel_err": f"{v['err']:.1e}",
                              "threads": info["nbconv_threads"], "machine": machine,
                              "command": command})
    print(f"CSV written to {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads (2)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo models")
    ap.add_argument("--no-extra", action="store_true", help="skip the layers of EXTRA")
    ap.add_argument("--layers", default=None,
                    help="comma-separated substrings: only layers whose name holds one")
    ap.add_argument("--passes", default=",".join(PASSES), help="fwd, data, weight")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: LeNet-5 and one depthwise layer, a tiny time budget")
    ap.add_argument("--min-repeats", type=int, default=7)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per contender (0.3)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="the statistic of the rows printed as they come (both at the end)")
    ap.add_argument("--csv", default=str(RESULTS_DIR / "direct_families.csv"),
                    help="CSV output ('' for none)")
    a = ap.parse_args(argv)
    if a.quick:
        a.models, a.layers = "lenet5", a.layers or "lenet5,dw 3x3 s2"
        a.min_repeats, a.budget, a.rounds = 2, 0.01, 2
    set_threads(a.threads)
    install()
    layers = _unique(zoo_layers([m for m in a.models.split(",") if m])
                     + ([] if a.no_extra else extra_layers()))
    rng = np.random.default_rng(0)
    results = []
    for layer in layers:
        if a.layers and not any(s in layer["name"] for s in a.layers.split(",")):
            continue
        fplan, bplan = auto_plans(layer)
        arrays = _arrays(layer, rng)
        for pass_name in a.passes.split(","):
            if (fplan if pass_name == "fwd" else bplan).algorithm != "direct":
                continue
            times, auto = time_pass(layer, pass_name, arrays, a)
            results.append({"layer": layer["name"], "source": layer["source"],
                            "shape": describe(layer), "pass": pass_name, "times": times,
                            "auto": auto})
            print(format_table(HEADERS, table_rows(results[-1:], a.stat)).splitlines()[-1],
                  flush=True)
    info = machine_info()
    print()
    print_machine(info)
    for stat in ("median", "min"):
        print(f"\n{stat}s:")
        print(format_table(HEADERS, table_rows(results, stat)))
    print(f"\nms (medians of {a.rounds} interleaved rounds, or the fastest run), float32, "
          f"{a.threads} threads, "
          "through nbconv.conv2d / conv2d_backward with the family forced; data = backward "
          "minus the weight pass it runs beside; pixvec = the pixel-vector blocks (on stride "
          "phases where strided or grouped); lead = second best / best; "
          f"* = error against auto above {TOLERANCE}")
    for stat in ("median", "min"):
        print()
        print(summary(results, stat))
    if a.csv:
        args = list(sys.argv[1:] if argv is None else argv)
        if "--csv" in args:  # the output, not how the figures were made
            del args[args.index("--csv"):args.index("--csv") + 2]
        write_csv(a.csv, results, info,
                  " ".join(["env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python "
                            "benchmarks/bench_direct_families.py", *args]).strip())


def _unique(layers):
    """One layer per (x shape, weight shape, geometry), named after every model that has it."""
    seen = {}
    for layer in layers:
        key = (layer["x"], layer["w"], layer["g"])
        if key in seen:
            seen[key]["name"] += " = " + layer["name"]
        else:
            seen[key] = dict(layer)
    return list(seen.values())


#: a family "wins" a pass when it is this much faster than every other family
MARGIN = 1.05


def summary(results, stat) -> str:
    """For each family, the passes it wins by more than 5% (the test for keeping it)."""
    lines = [f"passes each family wins by more than {MARGIN:.2f}x over every other family "
             f"({stat}s):"]
    for fam in FAMILIES:
        won = []
        for r in results:
            t = {f: v[stat] for f, v in r["times"].items()}
            if fam not in t:
                continue
            others = [v for f, v in t.items() if f != fam]
            if others and min(others) > MARGIN * t[fam]:
                won.append(f"{r['layer']} {r['pass']} ({min(others) / t[fam]:.2f}x)")
        ran = sum(fam in r["times"] for r in results)
        lines.append(f"  {fam:9s} {len(won)} of {ran}: " + ("; ".join(won) or "none"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
