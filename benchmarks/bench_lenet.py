"""LeNet-5 training step and inference: nbconv against the same network in PyTorch.

The nbconv model is ``nbconv.models.lenet5(activation="relu")``; the PyTorch model is the same
``torch.nn.Sequential`` (conv 1->6 5x5, ReLU, max-pool 2, conv 6->16 5x5, ReLU, max-pool 2,
flatten, 256->120, ReLU, 120->84, ReLU, 84->10) with nbconv's weights copied in (the state-dict
keys are the same).  Before timing, the script checks that both give the same logits and the same
weights after one training step, so the comparison is apples to apples.

* training step (batch 64, 28x28, float32): forward + CrossEntropyLoss + backward + SGD step
  (lr 0.01, momentum 0.9); zero_grad included.  Neither library computes the gradient with
  respect to the images: PyTorch's input tensor does not require grad, and nbconv's backward
  gets ``need_dx=False`` (as ``nbconv.train.fit`` does).
* inference (batch 256): nbconv ``model.eval()`` + ``nbconv.no_grad()``; PyTorch ``model.eval()``
  + ``torch.inference_mode()``.

Reported: images/s (batch / median time) and the speed ratio nbconv / PyTorch (higher is better;
target >= 1.5 for both, moonshot 2 for training).

Usage::

    python benchmarks/bench_lenet.py [--quick] [--threads 2] [--json PATH]
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

TARGETS = {"train": 1.5, "train_moonshot": 2.0, "inference": 1.5}
LR, MOMENTUM = 0.01, 0.9


def torch_lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def copy_weights(net, tnet, torch) -> None:
    state = {k: torch.from_numpy(v.copy()) for k, v in net.state_dict().items()}
    tnet.load_state_dict(state, strict=True)  # raises if the keys or shapes differ


class NbconvStep:
    def __init__(self, net):
        self.net = net
        self.crit = nbconv.losses.CrossEntropyLoss()
        self.opt = nbconv.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def __call__(self, x, t):
        self.opt.zero_grad()
        logits = self.net.forward(x)
        loss = self.crit.forward(logits, t)
        # the images need no gradient (torch: the input does not require grad)
        self.net.backward(self.crit.backward(), need_dx=False)
        self.opt.step()
        return loss


class TorchStep:
    def __init__(self, tnet, torch):
        self.tnet = tnet
        self.torch = torch
        self.opt = torch.optim.SGD(tnet.parameters(), lr=LR, momentum=MOMENTUM)

    def __call__(self, x, t):
        self.opt.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.tnet(x), t)
        loss.backward()
        self.opt.step()
        return loss


def contenders(task, net, tnet, torch, x, t, xi) -> dict:
    """``{"nbconv": fn, "torch": fn}`` (no "torch" when ``tnet`` is None): one training step
    on (x, t) in train mode, or inference on xi in eval mode (also bench_models.py's)."""
    if task == "train":
        net.train()
        step = NbconvStep(net)
        fns = {"nbconv": lambda: step(x, t)}
        if tnet is not None:
            tnet.train()
            tstep = TorchStep(tnet, torch)
            xt, tt = torch.from_numpy(x), torch.from_numpy(t)
            fns["torch"] = lambda: tstep(xt, tt)
        return fns
    net.eval()

    def nb_infer():
        with nbconv.no_grad():
            return net.forward(xi)

    fns = {"nbconv": nb_infer}
    if tnet is not None:
        tnet.eval()
        xit = torch.from_numpy(xi)

        def t_infer():
            with torch.inference_mode():
                return tnet(xit)

        fns["torch"] = t_infer
    return fns


def check_same(net, tnet, torch, x, t) -> dict:
    """Same logits before training and same weights after one step (tolerances for float32)."""
    with nbconv.no_grad():
        net.eval()
        a = net.forward(x)
    tnet.eval()
    with torch.no_grad():
        b = tnet(torch.from_numpy(x)).numpy()
    logits_err = float(np.max(np.abs(a - b)))
    net.train()
    tnet.train()
    NbconvStep(net)(x, t)
    TorchStep(tnet, torch)(torch.from_numpy(x), torch.from_numpy(t))
    ts = tnet.state_dict()
    w_err = max(float(np.max(np.abs(v - ts[k].detach().numpy())))
                for k, v in net.state_dict().items())
    ok = bool(np.allclose(a, b, rtol=1e-4, atol=1e-5) and w_err <= 1e-5)
    return {"logits_max_abs_err": logits_err, "weights_after_step_max_abs_err": w_err, "ok": ok}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats, tiny time budget")
    ap.add_argument("--threads", type=int, default=2, help="threads for nbconv and torch (2)")
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--infer-batch", type=int, default=256)
    ap.add_argument("--min-repeats", type=int, default=None, help="default 10 (3 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 1.0; 0.05 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    ap.add_argument("--json", default=str(RESULTS_DIR / "lenet.json"), help="JSON output path")
    args = ap.parse_args(argv)
    timing = {
        "min_repeats": args.min_repeats or (3 if args.quick else 10),
        "budget_s": args.budget if args.budget is not None else (0.05 if args.quick else 1.0),
        "rounds": args.rounds or (1 if args.quick else 3),
        "settle_s": 0.0 if args.quick else 0.02,
    }
    torch = None if args.no_torch else import_torch()
    set_threads(args.threads, torch)
    print_machine(machine_info(torch))

    nbconv.manual_seed(0)
    rng = np.random.default_rng(0)
    bt, bi = args.train_batch, args.infer_batch
    xt = rng.standard_normal((bt, 1, 28, 28), dtype=np.float32)
    yt = rng.integers(0, 10, bt)
    xi = rng.standard_normal((bi, 1, 28, 28), dtype=np.float32)

    net = nbconv.models.lenet5(activation="relu")
    check, tnet = None, None
    if torch is not None:
        tnet = torch_lenet(torch)
        copy_weights(net, tnet, torch)
        check = check_same(net, tnet, torch, xt, yt)
        print(f"same model check: logits max abs err {check['logits_max_abs_err']:.2e}, "
              f"weights after one step max abs err {check['weights_after_step_max_abs_err']:.2e}"
              f" -> {'OK' if check['ok'] else 'MISMATCH'}\n")

    results = {}
    # -- training step
    fns = contenders("train", net, tnet, torch, xt, yt, xi)
    first = {}
    for k, f in fns.items():
        t0 = time.perf_counter()
        f()
        first[k] = time.perf_counter() - t0
    results["train"] = measure_group(fns, **timing)
    for k in fns:
        results["train"][k]["first_call_s"] = first[k]

    # -- inference
    fns = contenders("inference", net, tnet, torch, xt, yt, xi)
    for f in fns.values():
        f()
    results["inference"] = measure_group(fns, **timing)

    rows = []
    summary = {}
    for task, batch in (("train", bt), ("inference", bi)):
        r = results[task]
        for st in r.values():
            st["images_per_s"] = batch / st["median_s"]
            st["ms"] = st["median_s"] * 1e3
        row = [task, batch, fmt_num(r["nbconv"]["ms"]), fmt_num(r["nbconv"]["images_per_s"], 0)]
        if "torch" in r:
            speed = r["nbconv"]["images_per_s"] / r["torch"]["images_per_s"]
            rounds = [t / n for n, t in zip(r["nbconv"]["round_medians_s"],
                                            r["torch"]["round_medians_s"])]
            summary[task] = {"speed_ratio": speed, "round_speed_ratios": rounds,
                             "target": TARGETS[task], "meets_target": speed >= TARGETS[task]}
            row += [fmt_num(r["torch"]["ms"]), fmt_num(r["torch"]["images_per_s"], 0),
                    fmt_num(speed), "/".join(fmt_num(v) for v in rounds), f">= {TARGETS[task]}",
                    "yes" if speed >= TARGETS[task] else "NO"]
        rows.append(row)
    headers = ["task", "batch", "nbconv ms", "nbconv img/s"]
    if torch is not None:
        headers += ["torch ms", "torch img/s", "speed ratio", "per round", "target", "ok"]
    print("LeNet-5 (relu, max-pool), float32; speed ratio = nbconv img/s / PyTorch img/s, "
          "higher is better")
    print(format_table(headers, rows))
    print()
    payload = {
        "benchmark": "lenet5",
        "machine": machine_info(torch),
        "protocol": {
            "dtype": "float32", "threads": args.threads, **timing,
            "statistic": "median of per-round medians",
            "train": "zero_grad + forward + CrossEntropyLoss + backward + SGD(lr=0.01, "
                     "momentum=0.9) step",
            "inference": "eval mode; nbconv.no_grad() / torch.inference_mode()",
        },
        "targets": TARGETS,
        "quick": args.quick,
        "check": check,
        "results": results,
        "summary": summary,
    }
    write_json(args.json, payload)
    if check is not None and not check["ok"]:
        print("MODELS DISAGREE: the comparison is not apples to apples")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
