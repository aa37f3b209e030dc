"""LLVM options in force while nbconv's own kernels compile.

At numba's default level (``-O3``) LLVM unswitches loops non-trivially: a loop whose body
branches on a value that does not change inside it is copied once per outcome.  Inside a
``prange`` kernel, where the helper called from the parallel loop is inlined with its
arguments loop-invariant, the copies multiply and every later loop pass works on all of
them: most of a max-pooling kernel's compile time and about a third of tap-GEMM's, while the
kernels run as fast without it (``benchmarks/results/unswitch.md``).  So, while a function of
nbconv's is being compiled (numba's ``"numba:compile"`` event, under numba's compiler lock),
LLVM's ``-unswitch-threshold`` is 1 (no candidate is that cheap, so only trivial unswitching
remains); afterwards it is LLVM's default again, so the user's own numba functions compile as
numba would compile them.  ``NBCONV_LOOP_UNSWITCH=1`` keeps LLVM's default for nbconv too.
"""

from __future__ import annotations

import llvmlite.binding as llvm
from numba.core import event

from . import _config

#: LLVM's default cost threshold of non-trivial loop unswitching (SimpleLoopUnswitch.cpp)
LLVM_DEFAULT_THRESHOLD: int = 50
#: the threshold while nbconv's kernels compile: the smallest LLVM accepts, nothing passes it
NBCONV_THRESHOLD: int = 1


def _set_threshold(value: int) -> None:
    llvm.set_option("nbconv", f"-unswitch-threshold={value}")


def compiles_nbconv(ev) -> bool:
    """Whether the ``"numba:compile"`` event ``ev`` compiles a function of nbconv's."""
    dispatcher = (ev.data or {}).get("dispatcher")
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module.startswith("nbconv.")


class _NoUnswitching(event.Listener):
    """Lowers the threshold when the outermost nbconv compilation starts and restores it
    when that one ends (helpers and numba's own overloads compile nested inside it)."""

    def __init__(self):
        self.depth = 0

    def on_start(self, ev):
        if self.depth or compiles_nbconv(ev):
            if self.depth == 0:
                _set_threshold(NBCONV_THRESHOLD)
            self.depth += 1

    def on_end(self, ev):
        if self.depth:
            self.depth -= 1
            if self.depth == 0:
                _set_threshold(LLVM_DEFAULT_THRESHOLD)


def install() -> None:
    """Register the listener (once per process) unless ``NBCONV_LOOP_UNSWITCH=1``."""
    if not _config.LOOP_UNSWITCH and not getattr(install, "done", False):
        event.register("numba:compile", _NoUnswitching())
        install.done = True
