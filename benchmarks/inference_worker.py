"""The worker processes of ``bench_inference.py``: each runs one library, on request.

Not a benchmark itself.  ``bench_inference.py --worker LIB --threads N`` starts one; it imports
only its library (and NumPy), reads one JSON request per line on stdin and answers one JSON line
on its original stdout (whatever the libraries print goes to stderr):

* ``{"op": "load", "model", "weights", "onnx", "input", "output"}``: build the model (nbconv's
  from the zoo builder and the ``.npz`` weights, onnxruntime's session on the ``.onnx`` file,
  PyTorch's twin), run it once on the ``.npz`` input and save the output (``.npy``);
  answers ``setup_s`` and ``first_call_s``;
* ``{"op": "time", "calls", "budget_s", "warm"}``: one timing block; answers ``times``;
* ``{"op": "info"}``: versions, loaded libraries, thread pools; ``{"op": "exit"}``.

A failed request answers ``{"ok": false, "error", "traceback"}`` and the worker goes on.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback

import numpy as np
from _timing import timed_calls

#: environment variables the workers run without (build-host workarounds for old OpenBLAS)
UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _time_block(fn, calls: int, budget_s: float, warm: bool) -> list[float]:
    """One block: an untimed call if ``warm``, then timed calls until ``calls`` and
    ``budget_s`` seconds are done, with the garbage collector paused."""
    if warm:
        fn()
    return timed_calls(fn, calls, budget_s)


def _threadpools() -> list[dict]:
    """The thread pools (BLAS, OpenMP) loaded in this process, as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture", "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


class _Runner:
    """What a worker runs: ``load`` prepares ``self.fn`` (one inference on the loaded input)."""

    def __init__(self, lib: str, threads: int):
        self.lib, self.threads, self.fn = lib, threads, None

    def info(self) -> dict:
        libs = ("nbconv", "numba", "onnxruntime", "torch")
        return {"lib": self.lib, "threads": self.threads, "python": platform.python_version(),
                "numpy": np.__version__,
                "loaded": [m for m in libs if m in sys.modules],
                "versions": {m: getattr(sys.modules[m], "__version__", None)
                             for m in libs if m in sys.modules},
                "threadpools": _threadpools(),
                "env": {k: os.environ.get(k) for k in UNSET_ENV}}

    def load(self, spec: dict) -> dict:
        """Build the contender for ``spec``; ``setup_s`` is the build time (for ``compiled``,
        the planning), ``first_call_s`` the first call's (compilation of kernels included)."""
        self.fn = None  # the previous model goes before the next one is built
        x = np.load(spec["input"])["x"]
        t0 = time.perf_counter()
        self.fn = self.prepare(spec, x)
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = self.fn()
        first_s = time.perf_counter() - t0
        np.save(spec["output"], self.to_numpy(out))
        return {"setup_s": setup_s, "first_call_s": first_s}

    def to_numpy(self, out):
        return np.array(out, dtype=np.float32)  # a copy: a compiled model may reuse its buffer


class _NbconvRunner(_Runner):
    def __init__(self, lib, threads, **options):
        super().__init__(lib, threads)
        import nbconv

        self.nbconv = nbconv
        nbconv.set_num_threads(threads)
        if lib == "compiled" and not hasattr(nbconv, "compile"):
            raise RuntimeError(f"this nbconv ({nbconv.__file__}) has no compile()")

    def _model(self, spec):
        from zoo import MODELS

        net = MODELS[spec["model"]][0]()
        net.load_state_dict(dict(np.load(spec["weights"])))
        return net.eval()

    def prepare(self, spec, x):
        nb, net = self.nbconv, self._model(spec)
        if self.lib == "compiled":
            cm = nb.compile(net, x.shape)
            return lambda: cm(x)

        def plain():
            with nb.no_grad():
                return net.forward(x)

        return plain

    def info(self):
        out = super().info()
        import numba

        try:
            out["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            out["numba_threading_layer"] = None
        return out


class _OrtRunner(_Runner):
    def __init__(self, lib, threads, ort_spinning=False):
        super().__init__(lib, threads)
        import onnxruntime as ort

        self.ort = ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # a spinning pool keeps the cores busy after each run, into the next library's block
        # (the pause before each block covers that too: --ort-spinning measures the difference)
        spin = "1" if ort_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.opts = opts

    def prepare(self, spec, x):
        sess = self.ort.InferenceSession(spec["onnx"], self.opts,
                                         providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        return lambda: sess.run(None, feed)[0]


class _TorchRunner(_Runner):
    def __init__(self, lib, threads, **options):
        super().__init__(lib, threads)
        import torch  # before nbconv, as in bench_models.py (the other order slowed PyTorch)

        self.torch = torch
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already fixed by an earlier parallel op
            pass

    def prepare(self, spec, x):
        from torch_twin import torch_twin
        from zoo import MODELS

        import nbconv  # noqa: F401  (the twin is built from the nbconv model)

        torch = self.torch
        net = MODELS[spec["model"]][0]()
        net.load_state_dict(dict(np.load(spec["weights"])))
        tnet = torch_twin(net.eval(), torch).eval()
        xt = torch.from_numpy(x)

        def infer():
            with torch.inference_mode():
                return tnet(xt)

        return infer

    def to_numpy(self, out):
        return out.numpy().astype(np.float32)


RUNNERS = {"nbconv": _NbconvRunner, "compiled": _NbconvRunner, "onnxruntime": _OrtRunner,
           "torch": _TorchRunner}


def worker_main(lib: str, threads: int, **options) -> int:
    """Serve the parent: one JSON request per line on stdin, one JSON reply per line on the
    original stdout; anything the libraries print goes to stderr."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(obj):
        reply.write(json.dumps(obj) + "\n")

    try:
        runner = RUNNERS[lib](lib, threads, **options)
        send({"ok": True, "info": runner.info()})
    except Exception as e:
        send({"ok": False, "error": f"{type(e).__name__}: {e}",
              "traceback": traceback.format_exc()})
        return 1
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop("op")
        if op == "exit":
            break
        try:
            if op == "load":
                res = runner.load(req)
            elif op == "time":
                res = {"times": _time_block(runner.fn, **req)}
            elif op == "info":
                res = {"info": runner.info()}
            else:
                raise ValueError(f"unknown request {op!r}")
            send({"ok": True, **res})
        except Exception as e:
            send({"ok": False, "error": f"{type(e).__name__}: {e}",
                  "traceback": traceback.format_exc()})
    return 0
