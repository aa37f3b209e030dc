"""What recording costs: training steps with and without it, in one process.

Forms of the same network (by default ``nbconv.models.lenet5(activation="relu")``, batch 64,
28x28; ``--model resnet18`` or ``googlenet``: 3x32x32, batch 32; float32, SGD with
momentum), timed in alternating blocks so that drift hits all alike:

* ``declared``: the builder's model (Sequential/Graph) and the explicit API
  (``net.forward``, ``crit.forward``, ``net.backward(..., need_dx=False)``), as ``fit``
  runs it;
* ``declared, raw``: the same with every ``forward``/``backward`` swapped back to the
  method as written (no recording wrappers): the cost of the wrappers is the difference;
* ``pystyle``: the network as a PyTorch-style subclass (no ``backward``), trained with
  ``loss = crit(net(x), y); loss.backward()``, the same weights;
* ``torch``: LeNet-5 in PyTorch, when installed (for ``--model lenet5`` only).

Before timing, the gradients of the nbconv forms are checked to be equal.  Reported: median
ms per step and the ratio to ``declared, raw`` (lower is better).

Usage::

    python benchmarks/bench_recording.py [--quick] [--model lenet5] [--threads 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import (
    RESULTS_DIR,
    format_table,
    import_torch,
    machine_info,
    measure,
    print_machine,
    set_threads,
    write_json,
)

import nbconv as nc
from nbconv import nn

LR, MOMENTUM = 0.01, 0.9


class PyStyleLeNet(nn.Module):
    """``models.lenet5(activation="relu")`` written as a PyTorch user would."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1, self.fc2, self.fc3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(nc.relu(self.conv1(x)))
        x = self.pool(nc.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        return self.fc3(nc.relu(self.fc2(nc.relu(self.fc1(x)))))


def build(model: str):
    """``(declared model, its PyTorch-style twin with the same weights, input shape)``."""
    if model == "lenet5":
        seq = nc.models.lenet5(activation="relu")
        py = PyStyleLeNet()
        copy_into_pystyle(seq, py)
        return seq, py, (1, 28, 28)
    from pystyle_models import PYSTYLE, copy_builder_weights

    seq = getattr(nc.models, model)(num_classes=10, in_channels=3)
    py = PYSTYLE[model](num_classes=10, in_channels=3)
    copy_builder_weights(seq, py)
    return seq, py, (3, 32, 32)


def copy_into_pystyle(seq, py) -> None:
    """The Sequential's weights into the subclass (same layers in the same order)."""
    for (_, p), (_, q) in zip(seq.named_parameters(), py.named_parameters(), strict=True):
        q.data[...] = p.data


class _RawMethods:
    """Context manager: every Module subclass's forward/backward as written (no wrappers)."""

    def __enter__(self):
        self.saved = []
        stack = [nn.Module]
        while stack:
            cls = stack.pop()
            stack.extend(cls.__subclasses__())
            for name in ("forward", "backward"):
                fn = cls.__dict__.get(name)
                raw = getattr(fn, "__nbconv_raw__", None)
                if raw is not None:
                    self.saved.append((cls, name, fn))
                    setattr(cls, name, raw)
        return self

    def __exit__(self, *exc):
        for cls, name, fn in self.saved:
            setattr(cls, name, fn)


def explicit_step(net, x, t):
    crit = nc.losses.CrossEntropyLoss()
    opt = nc.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        opt.zero_grad()
        loss = crit.forward(net.forward(x), t)
        net.backward(crit.backward(), need_dx=False)
        opt.step()
        return loss

    return step


def recorded_step(net, x, t):
    crit = nc.losses.CrossEntropyLoss()
    opt = nc.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        opt.zero_grad()
        loss = crit(net(x), t)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def torch_step(torch, seq, x, t):
    tn = torch.nn
    tnet = tn.Sequential(tn.Conv2d(1, 6, 5), tn.ReLU(), tn.MaxPool2d(2, 2), tn.Conv2d(6, 16, 5),
                         tn.ReLU(), tn.MaxPool2d(2, 2), tn.Flatten(), tn.Linear(256, 120),
                         tn.ReLU(), tn.Linear(120, 84), tn.ReLU(), tn.Linear(84, 10))
    tnet.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in seq.state_dict().items()})
    opt = torch.optim.SGD(tnet.parameters(), lr=LR, momentum=MOMENTUM)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tnet(xt), tt)
        loss.backward()
        opt.step()
        return loss

    return step


def check_same_gradients(model, x, t) -> float:
    """Largest relative difference of the nbconv forms' gradients after one step (float64)."""
    nc.manual_seed(0)
    a, b, _ = build(model)
    a.astype(np.float64)
    b.astype(np.float64)
    x = x.astype(np.float64)
    crit = nc.losses.CrossEntropyLoss()
    grads = []
    for form in ("declared", "raw", "pystyle"):
        net = b if form == "pystyle" else a
        net.zero_grad()
        if form == "pystyle":
            crit(net(x), t).backward()
        else:
            with _RawMethods() if form == "raw" else _Nothing():
                crit.forward(net.forward(x), t)
                net.backward(crit.backward(), need_dx=False)
        grads.append([p.grad.copy() for p in net.parameters()])
    return max(float(np.max(np.abs(g - r)) / max(np.max(np.abs(r)), 1e-30))
               for other in grads[1:] for g, r in zip(other, grads[0], strict=True))


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats, tiny time budget")
    ap.add_argument("--threads", type=int, default=2, help="threads for nbconv and torch (2)")
    ap.add_argument("--model", default="lenet5", choices=["lenet5", "resnet18", "googlenet"])
    ap.add_argument("--batch", type=int, default=None, help="default 64 (lenet5), else 32")
    ap.add_argument("--rounds", type=int, default=None, help="alternations (default 7, 1 quick)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--json", default=None, help="JSON output (results/recording_<model>.json)")
    args = ap.parse_args(argv)
    args.json = args.json or str(RESULTS_DIR / f"recording_{args.model}.json")
    rounds = args.rounds or (1 if args.quick else 7)
    block = {"min_repeats": 3 if args.quick else 20, "budget_s": 0.02 if args.quick else 0.4}
    torch = None if args.no_torch else import_torch()
    set_threads(args.threads, torch)
    info = machine_info(torch)
    print_machine(info)

    batch = args.batch or (64 if args.model == "lenet5" else 32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *build(args.model)[2]), dtype=np.float32)
    t = rng.integers(0, 10, batch)
    err = check_same_gradients(args.model, x, t)
    print(f"same gradients check: largest relative difference {err:.2e} -> "
          f"{'OK' if err <= 1e-10 else 'MISMATCH'}\n")

    nc.manual_seed(0)
    seq, py, _ = build(args.model)
    steps = {"declared": explicit_step(seq, x, t), "pystyle": recorded_step(py, x, t)}
    if torch is not None and args.model == "lenet5":
        steps["torch"] = torch_step(torch, seq, x, t)
    raw_step = explicit_step(seq, x, t)
    for fn in steps.values():
        fn()
    with _RawMethods():
        raw_step()

    def raw_block():
        with _RawMethods():
            return measure(raw_step, **block)

    blocks = {"declared, raw": raw_block}
    blocks.update({name: (lambda fn=fn: measure(fn, **block)) for name, fn in steps.items()})
    medians = {k: [] for k in blocks}
    names = list(blocks)
    for r in range(rounds):  # the order rotates from round to round
        for name in names[r % len(names):] + names[:r % len(names)]:
            medians[name].append(blocks[name]()["median_s"])
            time.sleep(0.02)
    base = statistics.median(medians["declared, raw"])
    rows, results = [], {}
    for name, ms in medians.items():
        med = statistics.median(ms)
        results[name] = {"median_s": med, "round_medians_s": ms, "ratio_to_raw": med / base}
        rows.append([name, f"{med * 1e3:.3f}", f"{med / base:.3f}", f"{batch / med:,.0f}"])
    print(f"{args.model} training step, batch {batch}, {rounds} alternating rounds "
          "(median of round medians)")
    print(format_table(["form", "ms/step", "time / raw", "images/s"], rows))
    write_json(args.json, {"machine": info, "model": args.model, "batch": batch,
                           "rounds": rounds, "gradient_check_rel_err": err,
                           "results": results})
    return 0 if err <= 1e-10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
