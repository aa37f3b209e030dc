"""numba's on-disk cache of nbconv's kernels is keyed by nbconv's version and all of its sources:
a kernel whose helper in another file changed is compiled afresh, never loaded stale.

The end-to-end tests run fresh processes on a temporary copy of the package, so that its
sources can be edited."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbconv
from nbconv import _cache

PACKAGE = Path(nbconv.__file__).parent

# SiLU's serial kernel (kernels/activations_ext.py) takes its exponential from _vmath.exp_neg,
# a helper in another file that numba compiles into the kernel.  The script prints the kernel's
# output for a few inputs, and what the cache-status notice said.
SCRIPT = """
import numpy as np, nbconv
from nbconv.kernels import activations_ext as k
assert nbconv.__file__.startswith({root!r}), nbconv.__file__
x = np.array([-3.0, -0.5, 0.0, 0.25, 2.0], np.float32)
y = np.empty_like(x)
k._silu_fwd_chunk(x, y)
print(repr(y.tolist()))
"""

# appended to the copy's _vmath.py: exp_neg(t) == 1 makes SiLU's sigmoid 1/2, so y = x / 2
CHANGED_HELPER = """

@_inner
def _exp_neg_changed(x):
    return x * 0 + 1


exp_neg = _exp_neg_changed
"""


def _copy_package(root: Path) -> Path:
    shutil.copytree(PACKAGE, root / "nbconv", ignore=shutil.ignore_patterns("__pycache__"))
    return root / "nbconv"


def _run(root: Path, code: str, **env) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that imports nbconv from ``root``."""
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NBCONV_CACHE")}
    environ.update(PYTHONPATH=str(root), NBCONV_COMPILE_NOTICE="1", **env)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=environ, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def _silu(root: Path, cache: Path) -> tuple[list, bool]:
    """The kernel's output and whether the process compiled an nbconv kernel."""
    out = _run(root, SCRIPT.format(root=str(root)), NUMBA_CACHE_DIR=str(cache))
    return eval(out.stdout.strip().splitlines()[-1]), "nbconv: compiling" in out.stderr


def _digest_folders(cache: Path) -> set:
    return {p.name for p in cache.rglob(_cache.PREFIX + "*") if p.is_dir()}


def test_changed_helper_in_another_file_is_recompiled(tmp_path):
    root = tmp_path / "src"
    pkg = _copy_package(root)
    cache = tmp_path / "cache"
    x = [-3.0, -0.5, 0.0, 0.25, 2.0]

    y, compiled = _silu(root, cache)
    assert compiled
    silu = [v / (1 + 2.718281828459045 ** -v) for v in x]
    assert y == pytest.approx(silu, rel=1e-6, abs=1e-7)
    assert _silu(root, cache) == (y, False)  # warm: loaded, not compiled

    vmath = pkg / "kernels" / "_vmath.py"
    original = vmath.read_text()
    vmath.write_text(original + CHANGED_HELPER)
    # the kernel's own file is unchanged: numba alone would load the SiLU compiled above
    y, compiled = _silu(root, cache)
    assert compiled
    assert y == [v / 2 for v in x]
    assert len(_digest_folders(cache)) == 2

    vmath.write_text(original)  # back to the first sources: their folder is still there
    y, compiled = _silu(root, cache)
    assert not compiled
    assert y == pytest.approx(silu, rel=1e-6, abs=1e-7)


def test_digest_follows_version_and_every_source_file(tmp_path):
    pkg = _copy_package(tmp_path)
    first = _cache.source_digest(str(pkg), "1.0")
    assert first == _cache.source_digest(str(pkg), "1.0")
    assert len(first) == 16 and int(first, 16) >= 0
    assert _cache.source_digest(str(pkg), "1.1") != first

    # neither file times nor numba's or Python's caches count, only the sources' bytes
    helper = pkg / "kernels" / "_ir.py"
    os.utime(helper, (1, 1))
    (pkg / "kernels" / "__pycache__").mkdir()
    (pkg / "kernels" / "__pycache__" / "x.nbi").write_bytes(b"\0")
    (pkg / "notes.txt").write_text("not a source")
    assert _cache.source_digest(str(pkg), "1.0") == first
    # nor the pure-Python rest of the package, which no compiled kernel holds
    layers = pkg / "nn" / "layers.py"
    layers.write_text(layers.read_text() + "\n# an edit\n")
    assert _cache.source_digest(str(pkg), "1.0") == first

    text = helper.read_text()
    helper.write_text(text + "\n")
    edited = _cache.source_digest(str(pkg), "1.0")
    assert edited != first
    helper.write_text(text)
    assert _cache.source_digest(str(pkg), "1.0") == first

    (pkg / "kernels" / "_new.py").write_text("")
    assert _cache.source_digest(str(pkg), "1.0") not in (first, edited)
    (pkg / "kernels" / "_new.py").unlink()
    (pkg / "kernels" / "_ir.py").rename(pkg / "kernels" / "_ir2.py")
    assert _cache.source_digest(str(pkg), "1.0") not in (first, edited)


def test_this_process_caches_under_its_own_digest():
    assert _cache._digest() == _cache.source_digest(str(PACKAGE), nbconv.__version__)
    if os.environ.get("NBCONV_CACHE", "1") == "0":
        pytest.skip("NBCONV_CACHE=0: the cache is off in this process")
    from nbconv.kernels import activations

    locator = activations._relu_fwd_chunk._cache._impl.locator
    assert isinstance(locator, _cache.NbconvCacheLocator)
    assert Path(locator.get_cache_path()).name == _cache.PREFIX + _cache._digest()


def test_old_unused_digest_folders_are_pruned(tmp_path):
    own = tmp_path / (_cache.PREFIX + "0" * 16)
    stale = tmp_path / (_cache.PREFIX + "1" * 16)
    recent = tmp_path / (_cache.PREFIX + "2" * 16)
    busy = tmp_path / (_cache.PREFIX + "3" * 16)  # old, but a live process uses it
    foreign = tmp_path / "usermodule.f-3.py311.nbi"  # numba's files of other functions
    for folder in (own, stale, recent, busy):
        folder.mkdir()
        (folder / "k-1.py311.nbi").write_bytes(b"\0")
    foreign.write_bytes(b"\0")
    held = len(_cache._held)
    _cache._hold(str(busy))
    old = time.time() - 2 * _cache.PRUNE_AFTER_S
    for path in (own, stale, busy, foreign):
        os.utime(path, (old, old))
    try:
        _cache._prune_beside(str(own))
    finally:
        while len(_cache._held) > held:
            os.close(_cache._held.pop())
    kept = [own, recent, foreign] + ([busy] if _cache.fcntl is not None else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    _cache._prune_beside(str(own))  # released: old enough to go now
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (own, recent,
                                                                                foreign))


def test_default_location_and_user_functions(tmp_path):
    """Without NUMBA_CACHE_DIR the kernels go to ``__pycache__/nbconv-<digest>`` next to their
    sources; a user's own cached function stays where numba puts it."""
    root = tmp_path / "src"
    pkg = _copy_package(root)
    (root / "usermod.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    code = ("import numpy as np, nbconv, usermod\n"
            f"assert nbconv.__file__.startswith({str(root)!r})\n"
            "nbconv.relu(np.ones(8, np.float32)); print(usermod.f(1))")
    assert _run(root, code).stdout.split() == ["2"]
    digest = _cache.source_digest(str(pkg), nbconv.__version__)
    folder = pkg / "kernels" / "__pycache__" / (_cache.PREFIX + digest)
    assert any(p.name.startswith("activations._relu") for p in folder.glob("*.nbi"))
    assert [p.name.split("-")[0] for p in (root / "__pycache__").glob("*.nbi")] == ["usermod.f"]
    assert not any(p.name.startswith(_cache.PREFIX) for p in (root / "__pycache__").iterdir())


def test_nbconv_cache_0_writes_nothing(tmp_path):
    root = tmp_path / "src"
    _copy_package(root)
    cache = tmp_path / "cache"
    code = "import numpy as np, nbconv; print(nbconv.relu(-np.ones(4, np.float32)).sum())"
    assert _run(root, code, NUMBA_CACHE_DIR=str(cache), NBCONV_CACHE="0").stdout.split() == ["0.0"]
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_kernels_import_only_what_the_digest_covers():
    """A kernel file that imported another nbconv module (say a threshold from
    nbconv.conv.plan) would freeze that module's values into compiled code that the digest
    does not follow: every nbconv import of a kernel source must be a kernel source too."""
    import ast

    sources = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if _cache.kernel_source(rel):
            sources[rel] = path
    assert any(r.startswith("kernels/") for r in sources)
    outside = []
    for rel, path in sources.items():
        package = rel.split("/")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - node.level + 1]
                module = base + (node.module.split(".") if node.module else [])
                imported = [module] + [module + [a.name] for a in node.names]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                imported = [m.split(".")[1:] for m in mods if m.split(".")[0] == "nbconv"]
            else:
                continue
            for parts in imported:
                target = "/".join(parts)
                files = [f for f in (f"{target}.py", f"{target}/__init__.py")
                         if (PACKAGE / f).exists()]
                if files and not any(_cache.kernel_source(f) for f in files):
                    outside.append(f"{rel} imports {'.'.join(parts)}")
    assert not outside, outside
