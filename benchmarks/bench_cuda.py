"""nbconv's CUDA kernels against PyTorch CUDA (TF32 off): conv2d layers and LeNet-5.

Runs only where a CUDA GPU is usable (it says so and exits 0 otherwise, also under numba's
simulator, which is far too slow to time).  float32 throughout.

* conv2d forward and backward (dx + dweight + dbias) on the SPEC section 7 layer set:
  ``nbconv.conv2d`` / ``nbconv.conv2d_backward`` on numba device arrays against
  ``torch.nn.functional.conv2d`` and ``torch.autograd.grad`` on CUDA tensors, with
  ``torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False`` so both
  sides compute in true float32.  Every nbconv result is checked against PyTorch's once.
* LeNet-5 (ReLU, max pooling, 28x28): training step (forward, cross-entropy, backward, SGD) at
  batch 64 and inference at batch 256, in images/s.  The nbconv network is written with the
  functional ops on device arrays (plus two small kernels here: the cross-entropy gradient and
  the SGD update), since layers cannot live on the device yet.

Times are medians after warm-up, each call followed by a device synchronisation.

Usage::

    python benchmarks/bench_cuda.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
from _common import (
    CONV_LAYERS,
    QUICK_LAYERS,
    RESULTS_DIR,
    fmt_num,
    format_table,
    import_torch,
    measure,
    write_json,
)
from bench_lenet import torch_lenet

import nbconv
import nbconv.cuda as ncu

LAYERS = CONV_LAYERS
LR = 0.01


def _sync_timer(fn, sync, budget_s):
    def run():
        fn()
        sync()

    run()  # compile / warm up
    return measure(run, min_repeats=5, budget_s=budget_s, warmup=1)


def _rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def bench_conv(name, spec, torch, budget_s):
    N, C, F, H, k, s, p, g = spec
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = (rng.standard_normal((F, C // g, k, k)) / np.sqrt(C // g * k * k)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    kw = dict(stride=s, padding=p, groups=g)
    xd, wd, bd = ncu.to_device(x), ncu.to_device(w), ncu.to_device(b)
    y = nbconv.conv2d(xd, wd, bd, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dyd = ncu.to_device(dy)
    sync = ncu.synchronize
    nb_f = _sync_timer(lambda: nbconv.conv2d(xd, wd, bd, **kw), sync, budget_s)
    nb_b = _sync_timer(lambda: nbconv.conv2d_backward(dyd, xd, wd, **kw), sync, budget_s)
    flops = 2.0 * N * F * y.shape[2] * y.shape[3] * (C // g) * k * k
    row = {"layer": name, "shape": spec, "gflop": flops / 1e9,
           "nbconv_fwd_s": nb_f["median_s"], "nbconv_bwd_s": nb_b["median_s"]}
    if torch is not None:
        dev = torch.device("cuda")
        xt = torch.from_numpy(x).to(dev).requires_grad_(True)
        wt = torch.from_numpy(w).to(dev).requires_grad_(True)
        bt = torch.from_numpy(b).to(dev).requires_grad_(True)
        dyt = torch.from_numpy(dy).to(dev)
        F_ = torch.nn.functional
        tsync = torch.cuda.synchronize

        def tf():
            with torch.no_grad():
                F_.conv2d(xt, wt, bt, stride=s, padding=p, groups=g)

        yt = F_.conv2d(xt, wt, bt, stride=s, padding=p, groups=g)
        t_f = _sync_timer(tf, tsync, budget_s)
        t_b = _sync_timer(lambda: torch.autograd.grad(yt, (xt, wt, bt), dyt, retain_graph=True),
                          tsync, budget_s)
        grads = torch.autograd.grad(yt, (xt, wt, bt), dyt, retain_graph=True)
        mine = nbconv.conv2d_backward(dyd, xd, wd, **kw)
        err = max([_rel_err(ncu.to_host(y), yt.detach().cpu().numpy())]
                  + [_rel_err(ncu.to_host(m), t.cpu().numpy()) for m, t in zip(mine, grads)])
        row.update(torch_fwd_s=t_f["median_s"], torch_bwd_s=t_b["median_s"],
                   fwd_ratio=nb_f["median_s"] / t_f["median_s"],
                   bwd_ratio=nb_b["median_s"] / t_b["median_s"], max_rel_err=err)
    return row


# --------------------------------------------------------------------------- LeNet on device


cuda = None  # numba's CUDA target, bound by _small_kernels (module-level for the simulator)


def _small_kernels():
    global cuda
    from nbconv.cuda._target import cuda

    @cuda.jit
    def ce_grad(logp, labels, d):
        t = cuda.grid(1)
        n, c = logp.shape
        if t < n * c:
            i, j = t // c, t % c
            v = math.exp(logp[i, j])
            if labels[i] == j:
                v -= 1
            d[i, j] = v / n

    @cuda.jit
    def sgd(w, g, lr):
        t = cuda.grid(1)
        if t < w.size:
            w[t] -= lr * g[t]

    return ce_grad, sgd


class DeviceLeNet:
    """LeNet-5 (ReLU, max pool) written with nbconv's functional ops on device arrays."""

    def __init__(self, params):
        self.p = {k: ncu.to_device(v) for k, v in params.items()}
        self.ce_grad, self.sgd = _small_kernels()

    def forward(self, x):
        p, c = self.p, {}
        a1 = nbconv.conv2d(x, p["0.weight"], p["0.bias"])
        r1 = nbconv.relu(a1)
        m1, i1 = nbconv.max_pool2d(r1, 2, return_indices=True)
        a2 = nbconv.conv2d(m1, p["3.weight"], p["3.bias"])
        r2 = nbconv.relu(a2)
        m2, i2 = nbconv.max_pool2d(r2, 2, return_indices=True)
        f = m2.reshape(m2.shape[0], 256)
        h1 = nbconv.relu(nbconv.linear(f, p["7.weight"], p["7.bias"]))
        h2 = nbconv.relu(nbconv.linear(h1, p["9.weight"], p["9.bias"]))
        out = nbconv.linear(h2, p["11.weight"], p["11.bias"])
        c.update(x=x, a1=a1, r1=r1, i1=i1, m1=m1, a2=a2, r2=r2, i2=i2, f=f, h1=h1, h2=h2)
        return out, c

    def train_step(self, x, labels):
        p = self.p
        logits, c = self.forward(x)
        logp = nbconv.log_softmax(logits)
        n = logits.shape[0]
        d = cuda.device_array((n, 10), np.float32)
        self.ce_grad[(n * 10 + 127) // 128, 128](logp, labels, d)
        g = {}
        d, g["11.weight"], g["11.bias"] = nbconv.linear_backward(d, c["h2"], p["11.weight"])
        d = nbconv.relu_backward(d, c["h2"])
        d, g["9.weight"], g["9.bias"] = nbconv.linear_backward(d, c["h1"], p["9.weight"])
        d = nbconv.relu_backward(d, c["h1"])
        d, g["7.weight"], g["7.bias"] = nbconv.linear_backward(d, c["f"], p["7.weight"])
        d = d.reshape(*c["i2"].shape)
        d = nbconv.max_pool2d_backward(d, c["i2"], tuple(c["r2"].shape))
        d = nbconv.relu_backward(d, c["a2"])
        d, g["3.weight"], g["3.bias"] = nbconv.conv2d_backward(d, c["m1"], p["3.weight"])
        d = nbconv.max_pool2d_backward(d, c["i1"], tuple(c["r1"].shape))
        d = nbconv.relu_backward(d, c["a1"])
        _, g["0.weight"], g["0.bias"] = nbconv.conv2d_backward(d, c["x"], p["0.weight"],
                                                              need_dx=False)
        for k, w in p.items():
            n_ = w.size
            self.sgd[(n_ + 127) // 128, 128](w.reshape(n_), g[k].reshape(n_), np.float32(LR))


def bench_lenet(torch, budget_s):
    net = nbconv.models.lenet5(activation="relu")
    params = {k: np.ascontiguousarray(v, np.float32) for k, v in net.state_dict().items()}
    dl = DeviceLeNet(params)
    rng = np.random.default_rng(0)
    xtr = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    ttr = rng.integers(0, 10, 64)
    xin = rng.standard_normal((256, 1, 28, 28)).astype(np.float32)
    xd, td, xid = ncu.to_device(xtr), ncu.to_device(ttr), ncu.to_device(xin)
    res = {}
    tr = _sync_timer(lambda: dl.train_step(xd, td), ncu.synchronize, budget_s)
    inf = _sync_timer(lambda: dl.forward(xid), ncu.synchronize, budget_s)
    res["nbconv_train_img_s"] = 64 / tr["median_s"]
    res["nbconv_infer_img_s"] = 256 / inf["median_s"]
    if torch is not None:
        dev = torch.device("cuda")
        tnet = torch_lenet(torch).to(dev)
        tnet.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
        # same logits before any training step
        with torch.no_grad():
            ref = tnet(torch.from_numpy(xin).to(dev)).cpu().numpy()
        fresh = DeviceLeNet(params)
        res["logits_max_rel_err"] = _rel_err(ncu.to_host(fresh.forward(xid)[0]), ref)
        opt = torch.optim.SGD(tnet.parameters(), lr=LR)
        xt, tt, xit = (torch.from_numpy(xtr).to(dev), torch.from_numpy(ttr).to(dev),
                       torch.from_numpy(xin).to(dev))

        def tstep():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(tnet(xt), tt).backward()
            opt.step()

        def tinf():
            with torch.no_grad():
                tnet(xit)

        ttr_ = _sync_timer(tstep, torch.cuda.synchronize, budget_s)
        tinf_ = _sync_timer(tinf, torch.cuda.synchronize, budget_s)
        res["torch_train_img_s"] = 64 / ttr_["median_s"]
        res["torch_infer_img_s"] = 256 / tinf_["median_s"]
    return res


class ModelStep:
    """One training step of an ``nbconv.nn`` model wherever its parameters live."""

    def __init__(self, net):
        self.net = net
        self.crit = nbconv.losses.CrossEntropyLoss()
        self.opt = nbconv.optim.SGD(net.parameters(), lr=LR)

    def __call__(self, x, t):
        self.opt.zero_grad()
        self.crit.forward(self.net.forward(x), t)
        self.net.backward(self.crit.backward(), need_dx=False)
        self.opt.step()


def bench_model_lenet(budget_s, batch=256):
    """Issue 5's target: ``nbconv.models.lenet5`` moved with ``nbconv.cuda.to_device`` and
    trained with nbconv's loss and optimizer on the GPU, against the same model on the CPU
    (both cores), at ``batch``; images/s and their ratio (target >= 3)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    t = rng.integers(0, 10, batch)
    cpu_step = ModelStep(nbconv.models.lenet5(activation="relu"))
    gpu_step = ModelStep(ncu.to_device(nbconv.models.lenet5(activation="relu")))
    xd, td = ncu.to_device(x), ncu.to_device(t)
    cpu = _sync_timer(lambda: cpu_step(x, t), lambda: None, budget_s)
    gpu = _sync_timer(lambda: gpu_step(xd, td), ncu.synchronize, budget_s)
    res = {"batch": batch, "cpu_train_img_s": batch / cpu["median_s"],
           "gpu_train_img_s": batch / gpu["median_s"]}
    res["gpu_over_cpu"] = res["gpu_train_img_s"] / res["cpu_train_img_s"]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 small layers, short timings")
    ap.add_argument("--layers", help="comma-separated subset of " + ",".join(LAYERS))
    ap.add_argument("--budget", type=float, default=None, help="seconds per measurement")
    ap.add_argument("--json", default=str(RESULTS_DIR / "cuda.json"))
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        print("bench_cuda: NUMBA_ENABLE_CUDASIM is set (numba's simulator): nothing to time; "
              "run it on a machine with a CUDA GPU")
        return 0
    if not ncu.is_available():
        print("bench_cuda: no usable CUDA GPU here (or numba's CUDA target is missing: pip "
              "install nbconv[cuda]); skipped")
        return 0
    import warnings

    from numba.core.errors import NumbaPerformanceWarning

    from nbconv.cuda._target import IMPLEMENTATION, cuda

    warnings.simplefilter("ignore", NumbaPerformanceWarning)  # small grids are the point here
    torch = None if args.no_torch else import_torch()
    if torch is not None and not torch.cuda.is_available():
        print("torch has no CUDA here: PyTorch columns skipped")
        torch = None
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    budget = args.budget if args.budget is not None else (0.1 if args.quick else 0.3)
    default = QUICK_LAYERS if args.quick else list(LAYERS)
    names = args.layers.split(",") if args.layers else default
    gpu = cuda.get_current_device().name
    gpu = gpu.decode() if isinstance(gpu, bytes) else str(gpu)
    print(f"GPU: {gpu}; numba CUDA target: {IMPLEMENTATION}; block "
          f"{nbconv._config.CUDA_BLOCK}; torch {getattr(torch, '__version__', '-')} (TF32 off)")
    rows, table = [], []
    for n in names:
        t0 = time.perf_counter()
        r = bench_conv(n, LAYERS[n], torch, budget)
        rows.append(r)
        table.append([n, fmt_num(r["nbconv_fwd_s"] * 1e3, 3),
                      fmt_num(r.get("torch_fwd_s", 0) * 1e3, 3), fmt_num(r.get("fwd_ratio")),
                      fmt_num(r["nbconv_bwd_s"] * 1e3, 3),
                      fmt_num(r.get("torch_bwd_s", 0) * 1e3, 3), fmt_num(r.get("bwd_ratio")),
                      f"{r.get('max_rel_err', float('nan')):.1e}",
                      f"{time.perf_counter() - t0:.0f}s"])
        print(f"  {n} done", flush=True)
    print()
    print(format_table(["layer", "nb fwd ms", "torch fwd ms", "fwd ratio", "nb bwd ms",
                        "torch bwd ms", "bwd ratio", "max rel err", "wall"], table))
    lenet = bench_lenet(torch, budget)
    print()
    print(format_table(["LeNet-5 images/s", "nbconv", "torch", "nbconv/torch"], [
        ["train (batch 64)", fmt_num(lenet["nbconv_train_img_s"], 0),
         fmt_num(lenet.get("torch_train_img_s"), 0),
         fmt_num(lenet["nbconv_train_img_s"] / lenet["torch_train_img_s"])
         if "torch_train_img_s" in lenet else "-"],
        ["inference (batch 256)", fmt_num(lenet["nbconv_infer_img_s"], 0),
         fmt_num(lenet.get("torch_infer_img_s"), 0),
         fmt_num(lenet["nbconv_infer_img_s"] / lenet["torch_infer_img_s"])
         if "torch_infer_img_s" in lenet else "-"],
    ]))
    if "logits_max_rel_err" in lenet:
        print(f"LeNet logits vs torch: max rel err {lenet['logits_max_rel_err']:.1e}")
    model = bench_model_lenet(budget)
    print()
    print(format_table(["LeNet-5 model training, batch 256", "images/s"], [
        ["nbconv on the GPU (nbconv.cuda.to_device(model))",
         fmt_num(model["gpu_train_img_s"], 0)],
        ["nbconv on the CPU (same model, both cores)", fmt_num(model["cpu_train_img_s"], 0)],
        ["GPU / CPU (target >= 3)", fmt_num(model["gpu_over_cpu"])],
    ]))
    write_json(Path(args.json), {
        "benchmark": "cuda", "gpu": gpu, "numba_cuda": IMPLEMENTATION,
        "torch": getattr(torch, "__version__", None), "tf32": False,
        "cuda_block": nbconv._config.CUDA_BLOCK, "conv2d": rows, "lenet5": lenet,
        "lenet5_model": model,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
