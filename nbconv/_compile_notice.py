"""One line on stderr when nbconv's kernels are being compiled, so that a first run with an
empty cache (resnet18: tens of seconds) does not look like a hang.

numba signals every real compilation (not a load from its on-disk cache) as a
``"numba:compile"`` event; the listener here reacts to the first one whose function lives in
nbconv and then stays silent.  ``NBCONV_COMPILE_NOTICE=0`` turns it off.  The notice goes on
a line of its own (above a tqdm progress bar that ``fit`` shows), and only on MPI rank 0: the
rank is read from the launcher's environment (or from mpi4py when it is already imported),
never by importing MPI.
"""

from __future__ import annotations

import os
import sys
import threading

import numba
from numba.core import event

from . import _config
from ._compile_options import compiles_nbconv

_lock = threading.Lock()

#: the rank variables MPI launchers set: MPICH/Intel MPI (hydra), Open MPI, PMIx, MVAPICH,
#: Slurm's srun
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK",
              "SLURM_PROCID")


def _rank() -> int:
    """This process's MPI rank (0 outside MPI), without importing mpi4py."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None:
        try:
            if mpi.Is_initialized() and not mpi.Is_finalized():
                return int(mpi.COMM_WORLD.Get_rank())
        except Exception:  # a broken MPI: fall back on the environment
            pass
    for name in _RANK_VARS:
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return 0


def _say(line: str) -> None:
    """``line`` on stderr on a line of its own: above tqdm's bars when tqdm is in use (a
    plain print would land inside the bar's line)."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and hasattr(tqdm, "tqdm"):
        tqdm.tqdm.write(line, file=sys.stderr)
        sys.stderr.flush()
    else:
        print(line, file=sys.stderr, flush=True)


def _where() -> str:
    cache = numba.config.CACHE_DIR
    return f"in {cache}" if cache else "next to nbconv's sources (__pycache__)"


class _FirstCompile(event.Listener):
    """Prints the notice once, at the first compilation of an nbconv function."""

    shown = False

    def on_start(self, ev):
        if _FirstCompile.shown or not compiles_nbconv(ev):
            return
        with _lock:
            if _FirstCompile.shown:
                return
            _FirstCompile.shown = True
        if _rank() != 0:  # every rank compiles; one notice is enough
            return
        cached = f"; they are cached {_where()}" if _config.CACHE else ""
        _say(f"nbconv: compiling kernels for this model (first run only{cached}); this can "
             "take a minute...")

    def on_end(self, ev):
        pass


def install() -> None:
    """Register the listener (once per process) unless the notice is switched off."""
    if _config.COMPILE_NOTICE and not getattr(install, "done", False):
        event.register("numba:compile", _FirstCompile())
        install.done = True
