"""The layout of the convolution kernels (``nbconv/kernels/conv/``): one module per kernel
family, no family importing another, shared code in :mod:`nbconv.kernels.conv.layout` and
the kernels importing nothing of the engine above them.  Read from the sources with
:mod:`ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONV = ROOT / "nbconv" / "kernels" / "conv"
PACKAGE = "nbconv.kernels.conv"

#: the modules of the package that are not kernel families: the package itself and the
#: layout code that several families share
SHARED = {"__init__", "layout"}

#: where the kernels may import from inside nbconv: the configuration and the kernel room
ALLOWED_PREFIXES = ("nbconv._config", "nbconv.kernels.")


def imported_modules(source: str, package: str) -> set[str]:
    """The absolute names of the modules that ``source`` (a module of ``package``) imports;
    ``from P import name`` counts both ``P`` and ``P.name`` (``name`` may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def family_imports(name: str, source: str, families: set[str]) -> set[str]:
    """The kernel families other than ``name`` that the module ``name`` imports."""
    prefix = PACKAGE + "."
    mods = imported_modules(source, PACKAGE)
    return {m[len(prefix):].split(".")[0] for m in mods if m.startswith(prefix)} \
        & (families - {name})


def _modules() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(CONV.glob("*.py"))}


def _families() -> set[str]:
    return set(_modules()) - SHARED


def test_the_families_are_there():
    assert {"rows", "wide", "pixel_vectors", "register_blocks", "depthwise", "im2col",
            "tapgemm", "winograd"} <= _families()
    assert not list(CONV.parent.glob("conv2d_*.py")), "a kernel family left outside kernels/conv"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_family_imports_another(name):
    """Shared code lives in ``layout`` (which imports no family either), so a change to one
    family's kernels never changes another's."""
    source = _modules()[name]
    assert not family_imports(name, source, _families()), \
        f"nbconv/kernels/conv/{name}.py imports the families " \
        f"{sorted(family_imports(name, source, _families()))}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_kernels_import_nothing_above_them(name):
    """Kernels know nothing of the engine: inside nbconv they import only the configuration
    and other kernel modules."""
    mods = imported_modules(_modules()[name], PACKAGE)
    above = {m for m in mods if (m == "nbconv" or m.startswith("nbconv."))
             and m != "nbconv" and not m.startswith(ALLOWED_PREFIXES)}
    # "from ... import _config" names the package nbconv itself and nbconv._config
    assert not above, f"nbconv/kernels/conv/{name}.py imports {sorted(above)}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_kernels_are_cached(name):
    """Every compiled function takes the project's flags (``JIT_OPTIONS``: the on-disk cache)
    or is inlined into one that does."""
    for node in ast.walk(ast.parse(_modules()[name])):
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            assert ast.unparse(dec) not in ("numba.njit", "njit"), \
                f"{name}.{node.name} is compiled without JIT_OPTIONS"
            if not (isinstance(dec, ast.Call) and ast.unparse(dec.func) in ("numba.njit",
                                                                             "njit")):
                continue
            keywords = {k.arg: k.value for k in dec.keywords}
            inlined = "inline" in keywords and ast.unparse(keywords["inline"]) == "'always'"
            flags = any(k.arg is None and ast.unparse(k.value).endswith("JIT_OPTIONS")
                        for k in dec.keywords)
            assert inlined or flags, f"{name}.{node.name} is compiled without JIT_OPTIONS"


@pytest.mark.parametrize("source, found", [
    ("from .wide import _x\n", {"wide"}),
    ("from . import wide\n", {"wide"}),
    ("from .layout import FB\nfrom ..gemm import g\n", set()),
    ("import nbconv.kernels.conv.tapgemm as t\n", {"tapgemm"}),
    ("from nbconv.kernels.conv.rows import f\n", set()),  # the module itself
])
def test_the_check_sees_family_imports(source, found):
    """The checker itself: relative, absolute and module imports of a family are caught."""
    families = {"rows", "wide", "tapgemm"}
    assert family_imports("rows", source, families) == found
