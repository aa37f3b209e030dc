"""Tuning on the machine at hand: time the algorithms that can run each convolution pass of a
model, keep the fastest, and remember the choice in a per-machine file that later processes
read.

The ``"auto"`` rules (:mod:`nbconv.conv.plan`) were measured on one host; another CPU (other
cache sizes, vector width or BLAS kernels) may prefer another algorithm for some layers.
:func:`tune` runs one training step of a model to find its convolutions, times every
applicable algorithm for each (forward and backward pass) and stores the winners; from then on
the engine's plans (:mod:`nbconv.conv.convplan`) take the stored choice for those shapes, in
this process and in any later one on the same machine (same CPU model and vector width, thread
count and nbconv version).  With ``NBCONV_AUTOTUNE=1`` every new shape is tuned the first time
it is planned.

The file lives beside numba's kernel cache (``NUMBA_CACHE_DIR``, else ``~/.cache/nbconv``;
``NBCONV_TUNE_DIR`` overrides), one JSON file per machine key.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from .._checks.conv import Geom, winograd_supports
from .._version import __version__

__all__ = ["tune", "TuneResult", "tuned_algorithm", "tune_file", "autotune_enabled"]

ALGORITHMS = ("direct", "im2col", "winograd", "tapgemm")

#: a candidate is timed again only while its first call took less than this many times the
#: fastest first call so far: slow candidates cost one call each
SLOW_FACTOR = 3.0

_lock = threading.Lock()
_table: dict | None = None  # {entry key: {"algorithm": ..., "times_ms": {...}}}
_loaded_from: Path | None = None


# ------------------------------------------------------------------------------ the machine file


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(threads: int | None = None) -> str:
    """What a tuned choice is valid for: CPU model, vector width, threads, nbconv version."""
    from ..kernels._ir import VECTOR_BYTES

    threads = numba.get_num_threads() if threads is None else threads
    return f"{_cpu_model()} | {VECTOR_BYTES * 8}-bit vectors | {threads} threads | nbconv " \
           f"{__version__}"


def tune_file(threads: int | None = None) -> Path:
    """The file holding this machine's tuned choices (for the current thread count)."""
    base = os.environ.get("NBCONV_TUNE_DIR") or numba.config.CACHE_DIR
    root = Path(base) if base else Path.home() / ".cache" / "nbconv"
    digest = hashlib.sha256(machine_key(threads).encode()).hexdigest()[:16]
    return root / "nbconv-tuned" / f"{digest}.json"


def _entry_key(pass_name, x_shape, weight_shape, g: Geom, dtype) -> str:
    return json.dumps([pass_name, list(x_shape), list(weight_shape), list(g), str(dtype)])


def _load() -> dict:
    """This machine's table (read once per process and thread count)."""
    global _table, _loaded_from
    path = tune_file()
    if _table is None or _loaded_from != path:
        table = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("machine") == machine_key():
                table = data.get("choices", {})
        except (OSError, ValueError, AttributeError):
            table = {}  # none yet, or unreadable: the rules decide
        _table, _loaded_from = table, path
    return _table


def _store(new: dict) -> Path:
    """Merge ``new`` choices into this machine's file, atomically (a crash never leaves a
    half-written file), and into this process's table."""
    path = tune_file()
    with _lock:
        table = dict(_load())
        table.update(new)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"machine": machine_key(), "choices": table}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tuned-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        globals()["_table"] = table
    from .convplan import clear_cache

    clear_cache()
    return path


def tuned_algorithm(pass_name, x_shape, weight_shape, g: Geom, dtype) -> str | None:
    """The stored choice for this pass and shape on this machine, or None."""
    found = _load().get(_entry_key(pass_name, x_shape, weight_shape, g, dtype))
    return None if found is None else found["algorithm"]


def autotune_enabled() -> bool:
    """``NBCONV_AUTOTUNE=1``: tune every new shape when it is first planned."""
    return os.environ.get("NBCONV_AUTOTUNE", "0") == "1"


# ------------------------------------------------------------------------------------ timing


def candidates(x_shape, weight_shape, g: Geom) -> list[str]:
    """The algorithms that can run this layer."""
    kh, kw = weight_shape[2], weight_shape[3]
    out = ["direct", "im2col"]
    if winograd_supports(kh, kw, g.sy, g.sx, g.dh, g.dw, g.groups):
        out.append("winograd")
    if g.groups == 1:
        out.append("tapgemm")
    return out


def _arrays(pass_name, x_shape, weight_shape, g, dtype, rng):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(weight_shape).astype(dtype)
    b = rng.standard_normal(weight_shape[0]).astype(dtype)
    dy = rng.standard_normal((x_shape[0], weight_shape[0], g.OH, g.OW)).astype(dtype)
    return x, w, b, dy


def time_pass(pass_name, x_shape, weight_shape, g: Geom, dtype, rule_choice, repeats=3,
              deadline=None) -> dict:
    """Milliseconds per call of each applicable algorithm (the best of ``repeats`` calls
    after one untimed call that compiles), the rule's choice first; a candidate whose timed
    call took more than :data:`SLOW_FACTOR` times the best so far is not repeated, and none
    starts after ``deadline`` (``time.perf_counter()`` value)."""
    from . import engine

    x, w, b, dy = _arrays(pass_name, x_shape, weight_shape, g, dtype,
                          np.random.default_rng(0))

    def run(algorithm):
        if pass_name == "forward":
            engine.forward("tune", x, w, b, g, algorithm)
        else:
            engine.backward("tune", dy, x, w, g, True, True, algorithm)

    order = [rule_choice] + [a for a in candidates(x_shape, weight_shape, g) if a != rule_choice]
    times: dict = {}
    for algorithm in order:
        if deadline is not None and times and time.perf_counter() > deadline:
            break
        run(algorithm)  # compiles (or loads) the kernels
        best = np.inf
        for i in range(repeats):
            t0 = time.perf_counter()
            run(algorithm)
            best = min(best, time.perf_counter() - t0)
            if i == 0 and times and best > SLOW_FACTOR * min(times.values()) / 1e3:
                break
        times[algorithm] = best * 1e3
    return times


def autotune(pass_name, x_shape, weight_shape, g: Geom, dtype, rule_choice) -> str:
    """Tune one pass now (``NBCONV_AUTOTUNE=1``) and store the winner."""
    times = time_pass(pass_name, x_shape, weight_shape, g, dtype, rule_choice)
    best = min(times, key=times.get)
    _store({_entry_key(pass_name, x_shape, weight_shape, g, dtype):
            {"algorithm": best, "times_ms": times, "rule": rule_choice}})
    return best


# ----------------------------------------------------------------------------- tuning a model


@dataclass(frozen=True)
class TuneRow:
    """One tuned pass: the layer, the pass, the rule's choice, the chosen algorithm and the
    milliseconds per call of every timed candidate."""

    layer: str
    pass_name: str
    rule_choice: str
    chosen: str
    times_ms: dict


@dataclass(frozen=True)
class TuneResult:
    """What :func:`tune` measured and stored; printing gives the table."""

    rows: tuple
    file: Path
    seconds: float
    budget_s: float

    def __str__(self) -> str:
        head = f"{'layer':<34} {'pass':<8} {'rule':<8} {'chosen':<8} times (ms)"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            times = "  ".join(f"{a} {t:.3g}" for a, t in r.times_ms.items())
            lines.append(f"{r.layer:<34} {r.pass_name:<8} {r.rule_choice:<8} {r.chosen:<8} "
                         f"{times}")
        changed = sum(r.chosen != r.rule_choice for r in self.rows)
        lines.append(f"{len(self.rows)} passes tuned in {self.seconds:.1f} s (budget "
                     f"{self.budget_s:g} s), {changed} changed from the rules; stored in "
                     f"{self.file}")
        return "\n".join(lines)


def _layer_name(x_shape, weight_shape, g: Geom) -> str:
    F, Cg, kh, kw = weight_shape
    C = x_shape[1]
    text = f"{C}->{F} {kh}x{kw}"
    if (g.sy, g.sx) != (1, 1):
        text += f" s{g.sy}" if g.sy == g.sx else f" s{g.sy},{g.sx}"
    if g.groups > 1:
        text += f" g{g.groups}"
    if (g.dh, g.dw) != (1, 1):
        text += f" d{g.dh}"
    return f"{text} on {x_shape[2]}x{x_shape[3]}, N={x_shape[0]}"


def _convolutions(model, input_shape, dtype) -> list:
    """The ``(pass, x_shape, weight_shape, geometry, dtype)`` of every ``"auto"`` convolution
    pass of one training step of ``model`` (forward, then backward with a random gradient),
    in first-seen order."""
    from . import convplan

    seen: dict = {}
    real = convplan._cached

    def spy(pass_name, op, x_shape, weight_shape, g, dt, algorithm):
        if algorithm == "auto":
            key = (pass_name, tuple(x_shape), tuple(weight_shape), g, np.dtype(dt).name)
            seen.setdefault(key, None)
        return real(pass_name, op, x_shape, weight_shape, g, dt, algorithm)

    was_training = getattr(model, "training", None)
    convplan._cached = spy
    try:
        if hasattr(model, "train"):
            model.train()
        x = np.random.default_rng(0).standard_normal(input_shape).astype(dtype)
        y = model(x)
        model.backward(np.ones_like(np.asarray(y)))
    finally:
        convplan._cached = real
        if was_training is False and hasattr(model, "eval"):
            model.eval()
        if hasattr(model, "zero_grad"):
            model.zero_grad()
    return list(seen)


def tune(model, input_shape, *, budget_s: float = 120.0, repeats: int = 3,
         dtype=np.float32, verbose: bool = True) -> TuneResult:
    """Time the algorithms of every convolution pass of ``model`` at ``input_shape`` on this
    machine, keep the fastest and store the choices for later processes.

    Parameters
    ----------
    model : nbconv.nn.Module
        Any model with ``forward``/``backward`` (declared or PyTorch-style); one training step
        is run on random input to find its convolutions (parameter gradients are zeroed
        after it; running statistics of batch norms see one random batch).
    input_shape : tuple of int
        ``(N, C, H, W)`` (the batch size matters: tune at the batch you train or serve).
    budget_s : float, default 120
        Wall-clock budget: passes not reached keep the rules' choice.  Each candidate costs
        one untimed call (which may compile its kernels) and at most ``repeats`` timed ones;
        one whose first timed call is over 3x the best so far is not repeated.
    repeats : int, default 3
        Timed calls per candidate (the best counts).
    dtype : float32 or float64
    verbose : bool
        Print the table (layer, pass, the rule's choice, the chosen algorithm, times).

    Returns
    -------
    TuneResult
        ``.rows`` (one per pass), ``.file`` (where the choices are stored); printable.
    """
    if not (callable(model) and hasattr(model, "backward")):
        raise TypeError(f"tune: argument 'model' must be an nbconv model with forward and "
                        f"backward, got {type(model).__name__}")
    try:
        input_shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"tune: argument 'input_shape' must be a tuple of ints, got "
                        f"{input_shape!r}") from None
    if len(input_shape) < 2 or min(input_shape) < 1:
        raise ValueError(f"tune: argument 'input_shape' must be (N, C, ...) with positive "
                         f"sizes, got {input_shape}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"tune: argument 'dtype' must be float32 or float64, got {dtype!r}")
    if not budget_s > 0:
        raise ValueError(f"tune: argument 'budget_s' must be positive, got {budget_s!r}")
    from .convplan import rules_choice

    start = time.perf_counter()
    deadline = start + budget_s
    rows, new = [], {}
    for pass_name, x_shape, w_shape, g, dt in _convolutions(model, input_shape, dtype):
        if time.perf_counter() > deadline:
            break
        rule = rules_choice(x_shape[1], w_shape[2], w_shape[3], g, w_shape[0], x_shape[2],
                            x_shape[3], pass_name == "backward").algorithm
        times = time_pass(pass_name, x_shape, w_shape, g, dt, rule, repeats, deadline)
        chosen = min(times, key=times.get)
        new[_entry_key(pass_name, x_shape, w_shape, g, dt)] = {
            "algorithm": chosen, "times_ms": times, "rule": rule}
        rows.append(TuneRow(_layer_name(x_shape, w_shape, g), pass_name, rule, chosen, times))
    path = _store(new)
    result = TuneResult(tuple(rows), path, time.perf_counter() - start, budget_s)
    if verbose:
        print(result, file=sys.stdout)
    return result
