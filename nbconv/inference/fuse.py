"""Fusion passes over traced steps, decided once when a model is compiled.

In order:

1. Dropout (eval) and Identity are removed: their readers read their input.
2. An inference batch norm right after a convolution (its only reader) is folded into the
   convolution's weights and bias: ``w' = w * scale[f]``, ``b' = b * scale[f] + shift[f]``
   (float64, rounded once to the model's dtype), so the normalisation costs nothing.
3. A ReLU that is the only reader of a convolution, a linear layer or a residual ``Add`` is
   applied in that step's pass (the convolution's store, the bias pass, one ``relu(a + b)``).
4. Steps whose result nobody reads are dropped (opaque ones are kept: they may do more).

Each pass keeps the results those of the plain forward to float32 rounding.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .trace import Step

__all__ = ["fuse"]


def fuse(steps: list[Step], out: int) -> tuple[list[Step], int]:
    """``steps`` (from :func:`~nbconv.inference.trace.trace`) after the passes, and the value
    they return."""
    steps, out = _drop_identities(steps, out)
    steps, out = _fold_batch_norms(steps, out)
    steps, out = _fuse_relus(steps, out)
    return _drop_dead(steps, out), out


def _readers(steps: list[Step], out: int) -> Counter:
    """How many times each value is read (the network's result counts as one read)."""
    n = Counter(v for s in steps for v in s.inputs)
    n[out] += 1
    return n


def _rename(steps: list[Step], old: int, new: int) -> None:
    for s in steps:
        s.inputs = [new if v == old else v for v in s.inputs]


def _drop_identities(steps, out):
    kept = []
    for s in steps:
        if s.kind == "identity":
            _rename(steps, s.output, s.inputs[0])
            if out == s.output:
                out = s.inputs[0]
        else:
            kept.append(s)
    return kept, out


def _only_reader(steps, i, readers, kind):
    """The step after ``steps[i]`` of ``kind`` that is the only reader of its result, with
    that result as its only input; None if there is none."""
    v = steps[i].output
    if readers[v] != 1:
        return None
    for s in steps[i + 1:]:
        if v in s.inputs:
            return s if s.kind == kind and s.inputs == [v] else None
    return None


def _fold_batch_norms(steps, out):
    readers = _readers(steps, out)
    dropped = set()
    for i, s in enumerate(steps):
        if s.kind != "conv":
            continue
        bn = _only_reader(steps, i, readers, "batchnorm")
        if bn is None:
            continue
        w = s.weight
        affine = bn.module._inference_affine(w.shape[0])
        if affine is None or not all(np.isfinite(a).all() for a in affine):
            continue  # training mode, untracked statistics, a zero variance with eps 0
        scale, shift = affine
        s.weight = (w.astype(np.float64) * scale[:, None, None, None]).astype(w.dtype)
        b = 0.0 if s.bias is None else s.bias.astype(np.float64)
        s.bias = (b * scale + shift).astype(w.dtype)
        s.fused.append(f"batchnorm {bn.name}")
        dropped.add(id(bn))
        _rename(steps, bn.output, s.output)
        out = s.output if out == bn.output else out
    return [s for s in steps if id(s) not in dropped], out


def _fuse_relus(steps, out):
    readers = _readers(steps, out)
    dropped = set()
    for i, s in enumerate(steps):
        if s.kind not in ("conv", "linear", "add") or s.relu:
            continue
        relu = _only_reader(steps, i, readers, "relu")
        if relu is None:
            continue
        s.relu = True
        s.fused.append(f"relu {relu.name}")
        dropped.add(id(relu))
        _rename(steps, relu.output, s.output)  # the ReLU's readers read this step's result
        out = s.output if out == relu.output else out
    return [s for s in steps if id(s) not in dropped], out


def _drop_dead(steps, out):
    live = {out}
    kept = []
    for s in reversed(steps):
        if s.output in live or s.kind == "opaque":
            live.update(s.inputs)
            kept.append(s)
    return kept[::-1]
