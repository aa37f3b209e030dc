"""numba's on-disk cache of nbconv's kernels, keyed by nbconv's version and all of its sources.

numba checks a cached kernel against its own source file only, but a kernel's compiled code
also holds the helpers it calls from other files (``kernels/_vmath.py``, ``kernels/_ir.py``,
...): after a helper changed, numba loaded the old kernel and computed the old thing, or crashed.
Here every nbconv kernel is cached in a folder named after :func:`source_digest` (a hash of
nbconv's version and of every ``.py`` file its kernels are made of) below the folder numba
itself would use for the kernel's file: ``$NUMBA_CACHE_DIR/<dir>_<hash>/nbconv-<digest>/`` when
``NUMBA_CACHE_DIR`` is set, else ``__pycache__/nbconv-<digest>/`` next to the sources when it is
writable, else numba's user-wide cache folder.  An upgraded install or any edited source file
gives a new digest, hence an empty folder, and the kernels compile afresh; nothing changes for
functions outside nbconv (the user's own ``cache=True`` functions stay where numba puts them).

Folders of other digests beside the one in use are deleted once they have not been used for
:data:`PRUNE_AFTER_S` seconds (each process marks its folder as used when it first caches there),
so that switching back and forth between two checkouts keeps both caches while superseded ones
do not pile up.  A folder that a live process uses is kept whatever its age: each process holds
a shared ``flock`` on the folder's :data:`IN_USE` file until it exits, and the pruning process
deletes a folder only under an exclusive one (POSIX; elsewhere age alone decides).  A process
whose folder went anyway keeps the kernels it loaded and compiles the others again.

``NBCONV_CACHE=0`` disables the cache altogether (:data:`nbconv._config.CACHE`); numba's own
``NUMBA_CACHE_LOCATOR_CLASSES`` replaces numba's list of locators, this one included.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import threading
import time

try:
    import fcntl
except ImportError:  # Windows: folders are pruned by age alone
    fcntl = None

from numba.core import caching, config

from ._version import __version__

#: nbconv's package folder: functions defined in files below it are nbconv's kernels
PACKAGE_DIR: str = os.path.dirname(os.path.abspath(__file__))

#: prefix of the digest folders (the digest follows it)
PREFIX: str = "nbconv-"

#: a digest folder unused for this long (seconds) is deleted when another digest is cached
#: beside it
PRUNE_AFTER_S: float = 3600.0

# numba's per-function cache machinery; ``_CacheImpl`` before numba 0.62
_CacheImpl = getattr(caching, "CacheImpl", None) or caching._CacheImpl


#: what compiled code can hold: the folders of nbconv's kernels and the modules they import
#: (tests/test_cache_safety.py checks that no kernel imports anything else of nbconv's)
KERNEL_SOURCES: tuple = ("kernels/", "cuda/kernels/", "_config.py", "_version.py",
                         "_cache.py", "cuda/_target.py")


def kernel_source(rel: str) -> bool:
    """Whether the package file ``rel`` (``/``-separated) is among :data:`KERNEL_SOURCES`."""
    return any(rel.startswith(k) if k.endswith("/") else rel == k for k in KERNEL_SOURCES)


def source_digest(package_dir: str = PACKAGE_DIR, version: str = __version__) -> str:
    """Hash of nbconv's version and of every ``.py`` file of its kernels
    (:data:`KERNEL_SOURCES`) below ``package_dir``.

    Parameters
    ----------
    package_dir : str
        The package folder (nbconv's own by default).
    version : str
        The version string hashed with the files.

    Returns
    -------
    str
        16 hexadecimal digits (64 bits of SHA-256): the files are taken in the order of their
        paths relative to ``package_dir`` (``/``-separated), each as its path, length and bytes,
        so a renamed, added, removed or edited kernel file changes the digest; editing the
        pure-Python rest of nbconv (layers, plans, files) leaves the compiled kernels valid.
    """
    files = []
    for root, dirs, names in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, package_dir).replace(os.sep, "/")
                if kernel_source(rel):
                    files.append((rel, path))
    h = hashlib.sha256(version.encode() + b"\0")
    for rel, path in sorted(files):
        with open(path, "rb") as f:
            data = f.read()
        h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


@functools.cache
def _digest() -> str:
    """:func:`source_digest` of the imported nbconv, computed once per process."""
    return source_digest()


def _in_package(py_file: str) -> bool:
    path = os.path.abspath(py_file)
    return path.startswith(PACKAGE_DIR + os.sep) and os.path.isfile(path)


_lock = threading.Lock()
#: digest folders this process has checked, marked as used and pruned beside
_prepared: set = set()
#: descriptors of the lock files of the digest folders this process uses (open until it exits)
_held: list = []

#: a file in each digest folder on which every process using the folder holds a shared lock
IN_USE: str = ".in-use"


def _hold(path: str) -> None:
    """Take a shared lock on ``path``'s :data:`IN_USE` file for the life of this process (POSIX
    only; best effort: the age of the folder still protects it where locks are unavailable)."""
    if fcntl is None:
        return
    try:
        # a raw descriptor, open until the process exits (a file object would warn at exit)
        fd = os.open(os.path.join(path, IN_USE), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # a pruning process holds it: the folder is going, numba recreates it
        os.close(fd)
        return
    _held.append(fd)


def _remove_if_unused(path: str) -> None:
    """Delete the digest folder ``path`` unless a live process holds its :data:`IN_USE` lock."""
    if fcntl is None:
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        fd = os.open(os.path.join(path, IN_USE), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # in use (or no locks on this file system: then kept)
        os.close(fd)
        return
    try:
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)


def _prune_beside(path: str) -> None:
    """Delete the other digests' folders next to ``path`` that have not been used for
    :data:`PRUNE_AFTER_S` seconds and that no live process holds (best effort: a folder another
    process removes or recreates meanwhile is skipped)."""
    parent, own = os.path.split(path)
    now = time.time()
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(PREFIX) or entry.name == own:
            continue
        try:
            if entry.is_dir(follow_symlinks=False) and \
                    now - entry.stat(follow_symlinks=False).st_mtime > PRUNE_AFTER_S:
                _remove_if_unused(entry.path)
        except OSError:
            pass


class NbconvCacheLocator(caching._CacheLocator):
    """numba cache locator of the functions defined in nbconv's files.

    It puts a function's cache in the folder ``nbconv-<digest>`` (:func:`source_digest`) below
    the folder numba's own locators would choose, in numba's order: ``NUMBA_CACHE_DIR`` when
    set, else ``__pycache__`` next to the source when writable, else numba's user-wide cache.
    The index's source stamp and the file names stay numba's.
    """

    def __init__(self, base: caching._CacheLocator, digest: str):
        self._base = base
        self._cache_path = os.path.join(base.get_cache_path(), PREFIX + digest)

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self):
        return self._base.get_source_stamp()

    def get_disambiguator(self) -> str:
        return self._base.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        """The locator of ``py_func`` when it is defined in nbconv's package, else ``None``
        (numba then asks its own locators)."""
        if not _in_package(py_file):
            return None
        try:
            digest = _digest()
        except OSError:  # a source file that cannot be read: numba's own locators decide
            return None
        if config.CACHE_DIR:
            bases = [caching.UserProvidedCacheLocator]
        else:
            bases = [caching.InTreeCacheLocator, caching.UserWideCacheLocator]
        for base_cls in bases:
            self = cls(base_cls(py_func, py_file), digest)
            path = self.get_cache_path()
            with _lock:
                if path in _prepared:
                    return self
            try:
                self.ensure_cache_path()
                os.utime(path)  # marks the folder as used, against pruning by other processes
            except OSError:
                continue  # not writable: the next folder numba would try
            with _lock:
                if path in _prepared:
                    return self
                _prepared.add(path)
            _hold(path)
            _prune_beside(path)
            return self
        return None


def install() -> None:
    """Put :class:`NbconvCacheLocator` first in numba's list of cache locators (once)."""
    locators = _CacheImpl._locator_classes
    if not any(getattr(c, "__name__", "") == NbconvCacheLocator.__name__ for c in locators):
        locators.insert(0, NbconvCacheLocator)
