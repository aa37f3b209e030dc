"""The path from ``nn.Conv2d``'s padding to its kernel (issue 26): the nbconv files a layer's
forward pass enters on its way to the numba kernel, traced with ``sys.settrace``.

The layer validates its hyperparameters when it is built and calls the functional's internal
entry, which checks only what depends on the arrays; the engine pads (one stage) and runs the
plan's driver, which calls the kernel.  At most eight files, none entered twice (a call from
one file into another that was entered before: a check module called back, a helper split
from its caller)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import nbconv as nc

ROOT = os.path.dirname(nc.__file__) + os.sep
LAYERS = os.path.join(ROOT, "nn", "layers.py")


def _path(layer, x):
    """``(files, entries)`` of ``layer.forward(x)`` from ``Conv2d.forward`` down to the
    kernel: the nbconv files its Python frames enter, in the order first entered (relative to
    the package), and how often each was entered from another file.  ``sys.settrace`` does
    not see the numba kernels' own calls: the last file is the driver's, or the kernel
    family's when the driver asks it for a layout constant first."""
    layer(x)  # compiles and plans: the traced call runs warm
    depth = [0]  # frames open under the first call out of layers.py (0: none yet, or done)
    files, entries = [], {}

    def local(frame, event, arg):
        if event == "return":
            depth[0] -= 1
        return local

    def trace(frame, event, arg):
        callee = frame.f_code.co_filename
        caller = frame.f_back.f_code.co_filename if frame.f_back is not None else None
        if depth[0] == 0:
            if files or caller != LAYERS or callee == LAYERS or not callee.startswith(ROOT):
                return None  # before the way down, or back in layers.py after it
        depth[0] += 1
        if callee.startswith(ROOT) and callee != caller:
            rel = os.path.relpath(callee, ROOT)
            if rel not in entries:
                files.append(rel)
            entries[rel] = entries.get(rel, 0) + 1
        return local

    before = sys.gettrace()
    sys.settrace(trace)
    try:
        layer.forward(x)
    finally:
        sys.settrace(before)
    return ["nn/layers.py", *files], entries


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=1, padding_mode="reflect"),
                                dict(padding=2, stride=2), dict(padding="same", dilation=2),
                                dict(padding=1, groups=3)])
def test_conv2d_reaches_its_kernel_through_few_files(kw):
    layer = nc.nn.Conv2d(3, 9, 3, **kw)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    files, entries = _path(layer, x)
    assert files[:4] == ["nn/layers.py", "functional/conv.py", "_checks/conv.py",
                         "conv/engine.py"], files
    drivers = {"conv/direct.py", "conv/im2col.py", "conv/tapgemm.py", "conv/winograd.py"}
    assert drivers & set(files), files  # the trace followed the way to the driver
    assert len(files) <= 8, files
    twice = {f: n for f, n in entries.items() if n > 1}
    assert not twice, (twice, files)
