"""Whole networks: every ``nbconv.models`` builder against the same network in PyTorch CPU.

Each model's PyTorch twin is built layer for layer from the nbconv model itself
(``torch_twin.py``) with the same weights, and proved equal before anything is timed: eval-mode
logits agree to float32 rounding, and one training step's loss and parameter gradients agree
in float64 (dropout layers held in eval mode for that check only, since the two libraries draw
different masks; batch norm runs on batch statistics).

* training step: zero_grad + forward + CrossEntropyLoss + backward + SGD(lr=0.01, momentum=0.9),
  no gradient with respect to the images in either library (PyTorch's input does not require
  grad; nbconv's backward gets ``need_dx=False``, as ``nbconv.train.fit`` does);
* inference: eval mode, ``nbconv.no_grad()`` / ``torch.inference_mode()``.

``resnet18_pystyle`` and ``googlenet_pystyle`` (``pystyle_models.py``) are the same two networks
written as PyTorch-style ``nn.Module`` subclasses without ``backward``, whose forward pass nbconv
records as it runs.  Selecting one times it in the same measurement rounds as its builder's
model and PyTorch (the builder's row is printed too), with the builder's weights, after checking
in float64 that one training step gives the same loss and parameter gradients.  Its training step
is ``loss = crit(net(x), y); loss.backward(); opt.step()`` (after ``opt.zero_grad()``), its
inference ``net(x)`` under ``nbconv.no_grad()``.  A second table gives its speed over the
builder's (SPEC target >= 0.97: within 3%).

CIFAR-sized input (3x32x32, 10 classes) at batch 32 and 128; lenet5 on MNIST-sized input
(1x28x28) at batch 64 and 256.  Both libraries on the same threads (2 by default), torch
imported first, contenders interleaved in rounds, medians of the per-round medians with the
spread.  Reported: images/s and the speed ratio nbconv / PyTorch (higher is better; SPEC
targets: training >= 1.0, inference >= 1.25, lenet5 training >= 1.5).

``--profile`` prints instead where one nbconv training step's time goes: forward and backward
time per layer type (fused Conv2d+ReLU pairs counted as such), the loss, the optimizer and the
rest (containers, Python bookkeeping).

Usage::

    python benchmarks/bench_models.py [--quick] [--models resnet18,resnet18_pystyle] [--batch 32]
                                      [--threads 2] [--json PATH] [--png PATH] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

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
from bench_lenet import LR, MOMENTUM, NbconvStep, contenders  # the same training step
from pystyle_models import PYSTYLE, copy_builder_weights
from torch_twin import torch_twin, twin_parameters
from zoo import MODELS

import nbconv

TARGETS = {"train": 1.0, "inference": 1.25, "lenet5_train": 1.5}
#: a PyTorch-style subclass's images/s over its builder's (SPEC: within 3%)
PYSTYLE_TARGET = 0.97
PYSTYLE_SUFFIX = "_pystyle"
#: the names --models accepts: the builders, and "<builder>_pystyle" for those in PYSTYLE
CHOICES = [*MODELS, *(f"{n}{PYSTYLE_SUFFIX}" for n in PYSTYLE if n in MODELS)]


def build_pystyle(name, net):
    """The PyTorch-style form of builder ``name`` (pystyle_models.py) with ``net``'s weights."""
    kwargs = {"in_channels": MODELS[name][1][0]}
    pnet = PYSTYLE[name](**kwargs)
    copy_builder_weights(net, pnet)
    return pnet


class PystyleStep:
    """The PyTorch way: ``loss = crit(net(x), y); loss.backward(); opt.step()``."""

    def __init__(self, net):
        self.net = net
        self.crit = nbconv.losses.CrossEntropyLoss()
        self.opt = nbconv.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def __call__(self, x, t):
        self.opt.zero_grad()
        loss = self.crit(self.net(x), t)
        loss.backward()
        self.opt.step()
        return loss.item()


def pystyle_contender(task, pnet, x, t, xi):
    """The PyTorch-style model's training step on (x, t) or inference on xi."""
    if task == "train":
        pnet.train()
        step = PystyleStep(pnet)
        return lambda: step(x, t)
    pnet.eval()

    def infer():
        with nbconv.no_grad():
            return pnet(xi)

    return infer


def check_pystyle(net, pnet, x, t) -> dict:
    """The PyTorch-style form against its builder (same weights): eval logits in float32, and
    one training step's loss and every parameter gradient in float64 (recorded backward
    against the builder's explicit one)."""
    for m in (net, pnet):
        m.eval()
    with nbconv.no_grad():
        logits = _rel_err(pnet(x), net.forward(x))
    crit = nbconv.losses.CrossEntropyLoss()
    x64 = x.astype(np.float64)
    for m in (net, pnet):
        m.astype(np.float64)
        m.train()
        m.zero_grad()
    loss = crit.forward(net.forward(x64), t)
    net.backward(crit.backward(), need_dx=False)
    ploss = crit(pnet(x64), t)
    ploss.backward()
    ploss = ploss.item()
    pairs = list(zip(net.parameters(), pnet.parameters()))
    grads = max(_rel_err(q.grad, p.grad) for p, q in pairs)
    for m in (net, pnet):
        m.astype(np.float32)
        m.zero_grad()
    ok = logits <= 1e-5 and abs(loss - ploss) <= 1e-12 * max(1.0, abs(loss)) and grads <= 1e-10
    return {"logits_rel_err": logits, "loss": ploss, "builder_loss": loss,
            "grads_max_rel_err_float64": grads, "parameters": len(pairs), "ok": bool(ok)}


def _dropouts_eval(net, tnet):
    for _, m in net.named_modules():
        if isinstance(m, nbconv.nn.Dropout):
            m.eval()
    for m in tnet.modules():
        if m.__class__.__name__ == "Dropout":
            m.eval()


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-12, float(np.max(np.abs(b)))))


def check_same(net, tnet, torch, x, t) -> dict:
    """Eval logits in float32, and one training step's loss and gradients in float64.

    The gradients are compared in float64 (both models converted, then converted back, which
    is exact for float32 weights): in float32 the two libraries' different summation orders
    flip ReLU masks at values within rounding of 0 after batch norm, and resnet18's gradients
    at batch 32 then differ by up to 5% although the float64 gradients agree to 1e-14.
    """
    net.eval()
    tnet.eval()
    with nbconv.no_grad():
        a = net.forward(x)
    with torch.no_grad():
        b = tnet(torch.from_numpy(x)).numpy()
    logits = _rel_err(a, b)
    net.astype(np.float64)
    tnet.double()
    net.train()
    tnet.train()
    _dropouts_eval(net, tnet)
    x64 = x.astype(np.float64)
    crit = nbconv.losses.CrossEntropyLoss()
    net.zero_grad()
    loss = crit.forward(net.forward(x64), t)
    net.backward(crit.backward())
    tloss = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(x64)), torch.from_numpy(t))
    tnet.zero_grad()
    tloss.backward()
    tloss = float(tloss.detach())
    grads = max(_rel_err(p.grad, q.grad.numpy()) for p, q in twin_parameters(net, tnet))
    net.astype(np.float32)
    tnet.float()
    tnet.zero_grad(set_to_none=True)
    net.train()
    tnet.train()
    ok = logits <= 1e-4 and abs(loss - tloss) <= 1e-9 * max(1.0, abs(loss)) and grads <= 1e-8
    return {"logits_rel_err": logits, "loss": loss, "torch_loss": tloss,
            "grads_max_rel_err_float64": grads, "ok": bool(ok)}


# --------------------------------------------------------------------------- profile


def _leaves(net):
    return [(name, m) for name, m in net.named_modules() if not m._children]


def profile_step(net, x, t, steps: int, step_cls=NbconvStep) -> dict:
    """Median seconds per training step spent in each layer type's forward and backward
    (``step_cls``: :class:`NbconvStep`, or :class:`PystyleStep` for a PyTorch-style model,
    whose loss is then timed as its ``forward`` and its recorded backward walk falls in "the
    rest")."""
    acc = defaultdict(list)
    current = defaultdict(float)

    def timed(label, fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            current[label] += time.perf_counter() - t0
            return out
        return run

    def timed_pair(kind, pass_, fn):
        """A fused pair's time (``Sequential`` asks a layer to run itself with its neighbour;
        None means it did not fuse and the two layers then run, and are timed, one by one)."""
        def run(other, arg):
            t0 = time.perf_counter()
            out = fn(other, arg)
            if out is not None:
                pair = (f"{kind}+{type(other).__name__}" if pass_ == "forward"
                        else f"{type(other).__name__}+{kind}")
                current[f"{pair} {pass_} (fused)"] += time.perf_counter() - t0
            return out
        return run

    patched = []
    for _, m in _leaves(net):
        kind = type(m).__name__
        for attr in ("forward", "backward"):
            setattr(m, attr, timed(f"{kind} {attr}", getattr(m, attr)))
            patched.append((m, attr))
        for attr, pass_ in (("_forward_through", "forward"), ("_backward_through", "backward")):
            setattr(m, attr, timed_pair(kind, pass_, getattr(m, attr)))
            patched.append((m, attr))
    step = step_cls(net)
    step.crit.forward = timed("loss", step.crit.forward)
    step.crit.backward = timed("loss", step.crit.backward)
    step.opt.step = timed("optimizer step", step.opt.step)
    step.opt.zero_grad = timed("optimizer zero_grad", step.opt.zero_grad)
    step(x, t)  # warm
    try:
        for _ in range(steps):
            current.clear()
            t0 = time.perf_counter()
            step(x, t)
            total = time.perf_counter() - t0
            current["the rest (containers, Python)"] = total - sum(current.values())
            current["TOTAL"] = total
            for k, v in current.items():
                acc[k].append(v)
    finally:
        for m, attr in patched:
            delattr(m, attr)
    return {k: statistics.median(v) for k, v in acc.items()}


def print_profile(name, batch, prof) -> None:
    total = prof["TOTAL"]
    rows = [[k, fmt_num(v * 1e3), f"{100 * v / total:.1f}%"]
            for k, v in sorted(prof.items(), key=lambda kv: -kv[1]) if k != "TOTAL"]
    rows.append(["TOTAL", fmt_num(total * 1e3), "100%"])
    print(f"{name}, batch {batch}: one nbconv training step (median of the profiled steps)")
    print(format_table(["part", "ms", "share"], rows))
    print()


# --------------------------------------------------------------------------- peak memory

_MEMORY_CHILD = """
import sys
import numpy as np


def hwm_kib():  # this process's peak RSS; ru_maxrss would carry the parent's across exec
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])


lib, name, batch, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
if lib == "torch":
    import torch
    torch.set_num_threads(2)
import nbconv
from bench_lenet import NbconvStep, TorchStep
from bench_models import MODELS
from torch_twin import torch_twin
nbconv.set_num_threads(2)
build, shape, _ = MODELS[name]
net = build()
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, *shape), dtype=np.float32)
t = rng.integers(0, 10, batch)
if lib == "torch":
    tnet = torch_twin(net, torch)
    del net
    step, args = TorchStep(tnet, torch), (torch.from_numpy(x), torch.from_numpy(t))
else:
    step, args = NbconvStep(net), (x, t)
before = hwm_kib()
for _ in range(steps):
    step(*args)
print(before, hwm_kib())
"""


def peak_memory(name, batch, steps=3) -> dict:
    """Peak resident memory (``VmHWM``, MiB) of a process that builds ``name`` and runs
    ``steps`` training steps at ``batch``: nbconv alone, and its PyTorch twin alone (the twin
    is built from an nbconv model that is then dropped; both processes import torch and
    nbconv, since the benchmark's helpers do).  ``before_steps_mib`` is the peak before the
    first step (libraries, model, data)."""
    import subprocess
    import sys
    from pathlib import Path

    out = {}
    for lib in ("nbconv", "torch"):
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, lib, name, str(batch),
                               str(steps), str(Path(__file__).resolve().parent)],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"memory run of {lib} failed:\n{proc.stderr[-2000:]}")
        before, peak = (int(v) / 1024 for v in proc.stdout.split()[-2:])
        out[lib] = {"peak_mib": peak, "before_steps_mib": before}
    out["ratio"] = out["nbconv"]["peak_mib"] / out["torch"]["peak_mib"]
    return out


# --------------------------------------------------------------------------- timing


def time_model(name, batch_train, batch_infer, torch, timing, rng,
               pystyle: bool = False) -> list[dict]:
    """``[builder's result]``, or with ``pystyle`` ``[builder's, PyTorch-style form's]``: the
    PyTorch-style form is timed in the same rounds as the builder and PyTorch."""
    build, shape, _ = MODELS[name]
    nbconv.manual_seed(0)
    net = build()
    out = {"model": name, "input": list(shape), "parameters": sum(p.data.size
                                                                  for p in net.parameters())}
    x = rng.standard_normal((batch_train, *shape), dtype=np.float32)
    t = rng.integers(0, 10, batch_train)
    xi = rng.standard_normal((batch_infer, *shape), dtype=np.float32)
    pnet = pout = None
    if pystyle:
        pnet = build_pystyle(name, net)
        pout = {"model": f"{name}{PYSTYLE_SUFFIX}", "builder": name, "form": "pystyle",
                "input": list(shape),
                "parameters": sum(p.data.size for p in pnet.parameters()),
                "check_vs_builder": check_pystyle(net, pnet, x[:2], t[:2])}
    tnet = None
    if torch is not None:
        tnet = torch_twin(net, torch)
        out["check"] = check_same(net, tnet, torch, x, t)
    for task, batch in (("train", batch_train), ("inference", batch_infer)):
        fns = contenders(task, net, tnet, torch, x, t, xi)
        if pnet is not None:  # timed between the builder and PyTorch, in the same rounds
            fns = {"nbconv": fns["nbconv"],
                   "pystyle": pystyle_contender(task, pnet, x, t, xi),
                   **{k: f for k, f in fns.items() if k != "nbconv"}}
        first = {}
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            first[k] = time.perf_counter() - t0
        res = measure_group(fns, first_s=first, **timing)
        for k, st in res.items():
            st["images_per_s"] = batch / st["median_s"]
            st["first_call_s"] = first[k]
        pres = res.pop("pystyle", None)
        out[task] = {"batch": batch, **res, **_vs_torch(res["nbconv"], res.get("torch"))}
        if pres is not None:
            pout[task] = {"batch": batch, "nbconv": pres, "builder": res["nbconv"],
                          **({"torch": res["torch"]} if "torch" in res else {}),
                          **_vs_torch(pres, res.get("torch")),
                          **_vs_builder(pres, res["nbconv"])}
    return [out] if pout is None else [out, pout]


def _round_ratios(fast, slow) -> list[float]:
    """Per-round speed ratios of ``fast`` over ``slow`` (their timing stats)."""
    return [s / f for f, s in zip(fast["round_medians_s"], slow["round_medians_s"])]


def _vs_torch(st, tst) -> dict:
    if tst is None:
        return {}
    return {"speed_ratio": st["images_per_s"] / tst["images_per_s"],
            "round_speed_ratios": _round_ratios(st, tst)}


def _vs_builder(st, bst) -> dict:
    ratio = st["images_per_s"] / bst["images_per_s"]
    return {"speed_ratio_vs_builder": ratio,
            "round_speed_ratios_vs_builder": _round_ratios(st, bst),
            "target_vs_builder": PYSTYLE_TARGET, "meets_target_vs_builder": ratio >= PYSTYLE_TARGET}


def _target(name, task):
    return TARGETS["lenet5_train"] if (name, task) == ("lenet5", "train") else TARGETS[task]


def _label(r) -> str:
    return f"{r['builder']} (pystyle)" if r.get("form") == "pystyle" else r["model"]


def print_table(results) -> None:
    rows = []
    for r in results:
        for task in ("train", "inference"):
            s = r[task]
            row = [_label(r), task, s["batch"], fmt_num(s["nbconv"]["median_s"] * 1e3),
                   fmt_num(s["nbconv"]["images_per_s"], 0)]
            if "torch" in s:
                ratios = s["round_speed_ratios"]
                target = _target(r.get("builder", r["model"]), task)
                row += [fmt_num(s["torch"]["median_s"] * 1e3),
                        fmt_num(s["torch"]["images_per_s"], 0), fmt_num(s["speed_ratio"]),
                        f"{fmt_num(min(ratios))}-{fmt_num(max(ratios))}", f">= {target}",
                        "yes" if s["speed_ratio"] >= target else "NO"]
            rows.append(row)
    headers = ["model", "task", "batch", "nbconv ms", "nbconv img/s"]
    if any("torch" in r["train"] for r in results):
        headers += ["torch ms", "torch img/s", "ratio", "rounds", "target", "ok"]
    print("speed ratio = nbconv images/s / PyTorch images/s (higher is better); 'rounds' is "
          "the spread of the per-round ratios")
    print(format_table(headers, rows))
    print()
    rows = []
    for r in results:
        if r.get("form") != "pystyle":
            continue
        for task in ("train", "inference"):
            s = r[task]
            ratios = s["round_speed_ratios_vs_builder"]
            rows.append([r["builder"], task, s["batch"], fmt_num(s["builder"]["median_s"] * 1e3),
                         fmt_num(s["nbconv"]["median_s"] * 1e3),
                         fmt_num(s["speed_ratio_vs_builder"], 3),
                         f"{fmt_num(min(ratios), 3)}-{fmt_num(max(ratios), 3)}",
                         f">= {PYSTYLE_TARGET}",
                         "yes" if s["meets_target_vs_builder"] else "NO"])
    if rows:
        print("PyTorch-style subclass (recorded forward, loss.backward()) against the same model "
              "as Sequential/Graph; ratio = subclass images/s / Sequential-Graph images/s")
        print(format_table(["model", "task", "batch", "Seq/Graph ms", "subclass ms", "ratio",
                            "rounds", "target", "ok"], rows))
        print()


def plot(results, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    rows = [(f"{_label(r)} b{r[task]['batch']}", task, r[task]["speed_ratio"])
            for r in results for task in ("train", "inference") if "speed_ratio" in r[task]]
    if not rows:
        return
    labels = sorted({lab for lab, _, _ in rows}, key=[lab for lab, _, _ in rows].index)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels)), 4))
    width = 0.4
    for k, task in enumerate(("train", "inference")):
        vals = {lab: v for lab, tk, v in rows if tk == task}
        xs = [i + (k - 0.5) * width for i, lab in enumerate(labels) if lab in vals]
        ax.bar(xs, [vals[lab] for lab in labels if lab in vals], width, label=task)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(TARGETS["inference"], color="gray", lw=0.8, ls="--", label="inference target")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel("nbconv / PyTorch images/s")
    ax.set_title("Whole networks, float32, CPU (higher is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart written to {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke run: batch 8 (lenet5 16), tiny time budget, one round")
    ap.add_argument("--models", default=",".join(CHOICES),
                    help=f"comma-separated subset of {','.join(CHOICES)} (a *{PYSTYLE_SUFFIX} "
                         "name also times its builder's model, in the same rounds)")
    ap.add_argument("--batch", default=None,
                    help="batch sizes, comma-separated, for training and inference alike "
                         "(default 32,128; lenet5 64,256)")
    ap.add_argument("--threads", type=int, default=2, help="threads for nbconv and torch (2)")
    ap.add_argument("--min-repeats", type=int, default=None, help="default 5 (2 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 2; 0.02 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--profile", action="store_true",
                    help="print where one nbconv training step's time goes, per layer type")
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--memory", action="store_true",
                    help="also measure the peak memory of training steps, nbconv and PyTorch "
                         "each in a process of its own (VmHWM)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "models.json"), help="JSON output")
    ap.add_argument("--png", default=str(RESULTS_DIR / "models.png"),
                    help="chart of the speed ratios ('' skips it)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHOICES]
    if unknown:
        ap.error(f"--models: unknown {unknown}; choose from {CHOICES}")
    # builders in order of first mention, each with or without its PyTorch-style form
    with_pystyle: dict[str, bool] = {}
    for n in names:
        base = n.removesuffix(PYSTYLE_SUFFIX)
        with_pystyle[base] = with_pystyle.get(base, False) or n != base
    timing = {
        "min_repeats": args.min_repeats or (2 if args.quick else 5),
        "budget_s": args.budget if args.budget is not None else (0.02 if args.quick else 2.0),
        "rounds": args.rounds or (1 if args.quick else 3),
        "settle_s": 0.0 if args.quick else 0.05,
    }
    torch = None if args.no_torch or args.profile else import_torch()
    set_threads(args.threads, torch)
    print_machine(machine_info(torch))
    rng = np.random.default_rng(0)
    results = []
    for name, pystyle in with_pystyle.items():
        _, shape, defaults = MODELS[name]
        if args.batch:
            batches = [int(b) for b in args.batch.split(",")]
        elif args.quick:
            batches = [16 if name == "lenet5" else 8]
        else:
            batches = list(defaults)
        for b in batches:
            if args.profile:
                nbconv.manual_seed(0)
                net = MODELS[name][0]()
                x = rng.standard_normal((b, *shape), dtype=np.float32)
                t = rng.integers(0, 10, b)
                if name in names:
                    print_profile(name, b, profile_step(net, x, t, args.profile_steps))
                if pystyle:
                    print_profile(f"{name} (pystyle)", b,
                                  profile_step(build_pystyle(name, net), x, t,
                                               args.profile_steps, PystyleStep))
                continue
            t0 = time.perf_counter()
            r, *pr = time_model(name, b, b, torch, timing, rng, pystyle)
            for p in pr:
                c = p["check_vs_builder"]
                print(f"{name} (pystyle) b{b}: same-model check against the builder: logits rel "
                      f"err {c['logits_rel_err']:.1e}, loss {c['loss']:.6f} vs "
                      f"{c['builder_loss']:.6f}, float64 gradients rel err "
                      f"{c['grads_max_rel_err_float64']:.1e} -> "
                      f"{'OK' if c['ok'] else 'MISMATCH'}", flush=True)
            if "check" in r:
                c = r["check"]
                print(f"{name} b{b}: same-model check logits rel err {c['logits_rel_err']:.1e}, "
                      f"loss {c['loss']:.6f} vs {c['torch_loss']:.6f}, float64 gradients rel err "
                      f"{c['grads_max_rel_err_float64']:.1e} -> {'OK' if c['ok'] else 'MISMATCH'} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            if args.memory and torch is not None:
                r["memory"] = mem = peak_memory(name, b)
                print(f"{name} b{b}: peak memory of training steps nbconv "
                      f"{mem['nbconv']['peak_mib']:.0f} MiB, PyTorch "
                      f"{mem['torch']['peak_mib']:.0f} MiB (ratio {mem['ratio']:.2f})",
                      flush=True)
            results += [r, *pr]
    if args.profile:
        return 0
    print()
    print_table(results)
    payload = {"benchmark": "models", "machine": machine_info(torch),
               "protocol": {"dtype": "float32", "threads": args.threads, **timing,
                            "statistic": "median of per-round medians",
                            "train": "zero_grad + forward + CrossEntropyLoss + backward + "
                                     f"SGD(lr={LR}, momentum={MOMENTUM})",
                            "inference": "eval; nbconv.no_grad() / torch.inference_mode()",
                            "pystyle_train": "opt.zero_grad(); loss = crit(net(x), y); "
                                             "loss.backward(); opt.step()",
                            "pystyle_inference": "eval; net(x) under nbconv.no_grad()"},
               "targets": {**TARGETS, "pystyle_vs_builder": PYSTYLE_TARGET},
               "quick": args.quick, "results": results}
    write_json(args.json, payload)
    if args.png:
        plot(results, args.png)
    bad = [r["model"] for r in results if "check" in r and not r["check"]["ok"]
           or "check_vs_builder" in r and not r["check_vs_builder"]["ok"]]
    if bad:
        print(f"MODELS DISAGREE ({bad}): those comparisons are not apples to apples")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
