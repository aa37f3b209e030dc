"""One line on stderr when nbconv's kernels are being compiled, so that a first run with an
empty cache (resnet18: tens of seconds) does not look like a hang.

numba signals every real compilation (not a load from its on-disk cache) as a
``"numba:compile"`` event; the listener here reacts to the first one whose function lives in
nbconv and then stays silent.  ``NBCONV_COMPILE_NOTICE=0`` turns it off.
"""

from __future__ import annotations

import sys
import threading

import numba
from numba.core import event

from . import _config

_lock = threading.Lock()


def _where() -> str:
    cache = numba.config.CACHE_DIR
    return f"in {cache}" if cache else "next to nbconv's sources (__pycache__)"


class _FirstCompile(event.Listener):
    """Prints the notice once, at the first compilation of an nbconv function."""

    shown = False

    def on_start(self, ev):
        if _FirstCompile.shown:
            return
        dispatcher = (ev.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith("nbconv."):
            return
        with _lock:
            if _FirstCompile.shown:
                return
            _FirstCompile.shown = True
        cached = f"; they are cached {_where()}" if _config.CACHE else ""
        print(f"nbconv: compiling kernels for this model (first run only{cached}); this can "
              "take a minute...", file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


def install() -> None:
    """Register the listener (once per process) unless the notice is switched off."""
    if _config.COMPILE_NOTICE and not getattr(install, "done", False):
        event.register("numba:compile", _FirstCompile())
        install.done = True
