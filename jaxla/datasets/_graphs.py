"""Real graphs, with no download (see jaxla.datasets).

* :func:`karate_club`: Zachary's karate club (34 members, 78 friendships, two factions), read
  from ``karate_club.txt``, which ships with jaxla.
* :func:`stdlib_import_graph`: the directed graph of imports between the modules of the Python
  standard library of the running interpreter, built on the machine by parsing the library's
  sources with :mod:`ast` (no module is imported or executed).

Both return numpy arrays and feed :func:`jaxla.models.graphs.adjacency_matrix`.
"""

from __future__ import annotations

import ast
import functools
import importlib.resources
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy as np

from jaxla import _checks

__all__ = ["karate_club", "stdlib_import_graph"]

_KARATE_FILE = "karate_club.txt"
_KARATE_NODES = 34
_KARATE_EDGES = 78
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                        "__pycache__"})


@functools.lru_cache(maxsize=1)
def _karate() -> tuple[np.ndarray, np.ndarray]:
    fn = "jaxla.datasets.karate_club"
    text = importlib.resources.files("jaxla.datasets").joinpath(_KARATE_FILE).read_text("utf-8")
    factions: dict[int, int] = {}
    edges: list[tuple[int, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, *fields = line.split()
        if kind == "node" and len(fields) == 2:
            factions[int(fields[0])] = int(fields[1])
        elif kind == "edge" and len(fields) == 2:
            edges.append((int(fields[0]), int(fields[1])))
        else:
            _checks.fail(fn, f"`{_KARATE_FILE}` line {number} must read 'node <i> <faction>' or "
                         f"'edge <i> <j>', got {line!r}")
    if sorted(factions) != list(range(_KARATE_NODES)) or len(edges) != _KARATE_EDGES:
        _checks.fail(fn, f"`{_KARATE_FILE}` must list {_KARATE_NODES} nodes and {_KARATE_EDGES} "
                     f"edges, got {len(factions)} and {len(edges)}")
    e = np.asarray(edges, dtype=np.int64)
    f = np.asarray([factions[i] for i in range(_KARATE_NODES)], dtype=np.int64)
    return e, f


def karate_club() -> tuple[np.ndarray, np.ndarray]:
    """Zachary's karate club: the friendship network of a club that split in two.

    W. W. Zachary observed the 34 members of a university karate club for three years and
    recorded which pairs interacted outside the club. A conflict between the instructor
    ("Mr. Hi", member 0) and the administrator ("Officer", member 33) split the club; each
    member's faction is recorded. The members are numbered as in networkx's
    ``karate_club_graph()``, and the factions are its ``"club"`` attribute.

    Returns:
        ``(edges, factions)``: edges (78, 2) int64, the undirected friendships ``(i, j)`` with
        ``i < j``, sorted; factions (34,) int64, 0 for Mr. Hi's faction and 1 for the Officer's
        (17 members each).

    References:
        W. W. Zachary, "An information flow model for conflict and fission in small groups",
        Journal of Anthropological Research 33(4):452-473, 1977.

    Examples:
        >>> from jaxla.datasets import karate_club
        >>> edges, factions = karate_club()
        >>> edges.shape, factions.shape, int(factions.sum())
        ((78, 2), (34,), 17)
        >>> edges[:3].tolist()
        [[0, 1], [0, 2], [0, 3]]
    """
    e, f = _karate()
    return e.copy(), f.copy()


def _stdlib_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    dirs = []
    for key in ("stdlib", "platstdlib"):
        p = Path(paths[key])
        if p.is_dir() and p not in dirs:
            dirs.append(p)
    return dirs


def _is_package_dir(root: Path, parts: tuple[str, ...]) -> bool:
    return all(
        part.isidentifier() and part not in _SKIP_DIRS
        and (root.joinpath(*parts[:i + 1]) / "__init__.py").is_file()
        for i, part in enumerate(parts)
    )


@functools.lru_cache(maxsize=1)
def _stdlib_modules() -> tuple[dict[str, Path | None], frozenset[str]]:
    """Every standard-library module: name -> source file (None for compiled modules).

    Also returns the names of packages (modules whose source is an ``__init__.py``).
    """
    sources: dict[str, Path | None] = {}
    packages = set()
    roots = _stdlib_dirs()
    root = roots[0]
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        dirs, stem = parts[:-1], path.stem
        if not stem.isidentifier() or not _is_package_dir(root, dirs):
            continue
        if stem == "__init__":
            if not dirs:
                continue
            name = ".".join(dirs)
            packages.add(name)
        else:
            name = ".".join((*dirs, stem))
        sources[name] = path
    compiled = set(sys.builtin_module_names)
    for r in roots:
        dyn = r / "lib-dynload"
        if dyn.is_dir():
            compiled.update(p.name.split(".")[0] for p in dyn.iterdir() if p.suffix in (".so",
                                                                                        ".pyd"))
    for name in compiled:
        if name.isidentifier():
            sources.setdefault(name, None)
    return sources, frozenset(packages)


def _known_prefix(name: str, known: dict[str, Path | None]) -> str | None:
    """The longest dotted prefix of ``name`` that is a known module."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in known:
            return prefix
    return None


def _imports(tree: ast.AST, name: str, is_package: bool,
             known: dict[str, Path | None]) -> set[str]:
    """The known modules that the module ``name`` (parsed as ``tree``) imports."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known_prefix(alias.name, known)
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                up = node.level - 1
                if up >= len(parts):
                    continue  # beyond the top-level package
                base = ".".join(parts[:len(parts) - up] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if alias.name != "*" and sub in known else _known_prefix(base, known)
                if target:
                    out.add(target)
    out.discard(name)
    return out


def _order_key(name: str) -> tuple[int, bool, str]:
    return (name.count("."), any(p.startswith("_") for p in name.split(".")), name)


@functools.lru_cache(maxsize=4)
def _import_graph(max_modules: int | None) -> tuple[tuple[str, ...], np.ndarray]:
    known, packages = _stdlib_modules()
    chosen = sorted(known, key=_order_key)
    if max_modules is not None:
        chosen = chosen[:max_modules]
    names = tuple(sorted(chosen))
    index = {n: i for i, n in enumerate(names)}
    edges = set()
    for name in names:
        path = known[name]
        if path is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SyntaxWarnings of old escape sequences
                tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # a file this interpreter cannot parse contributes no edges
        for target in _imports(tree, name, name in packages, known):
            if target in index:
                edges.add((index[name], index[target]))
    e = np.asarray(sorted(edges), dtype=np.int64).reshape(-1, 2)
    return names, e


def stdlib_import_graph(max_modules: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The import graph of the Python standard library, built from its sources.

    Nodes are the modules of the running interpreter's standard library
    (``sysconfig.get_paths()["stdlib"]``): every ``.py`` module and package outside the test
    suites (directories ``test``, ``tests``, ``idle_test``) and ``site-packages``, plus the
    compiled modules (``sys.builtin_module_names`` and the extension modules in
    ``lib-dynload``), which have no source and so no out-edges. There is an edge ``i -> j`` when
    the source of module ``i`` contains an import statement (anywhere in the file, including
    inside functions and ``try`` blocks) of module ``j``: ``import a.b.c`` links to the longest
    of ``a.b.c``, ``a.b``, ``a`` that is a module; ``from a import b`` links to the submodule
    ``a.b`` when there is one, else to ``a``; relative imports are resolved against the
    importing module's package. Self-imports and repeated imports give no extra edge. The
    sources are parsed with :mod:`ast`; nothing is imported or executed.

    The graph depends on the Python version (CPython 3.11 on Linux gives about 840 modules and
    3,650 edges). Parsing all sources takes several seconds; results are cached for the
    process.

    Args:
        max_modules: Keep only this many modules (int >= 1; None keeps all): the top-level
            public modules first, then the private ones (a name part starting with ``_``), then
            the submodules by depth, each group alphabetically; edges between the kept modules.
            Only the kept modules' sources are parsed.

    Returns:
        ``(names, edges)``: names (n,) str array of dotted module names, sorted; edges (m, 2)
        int64 array of ``(importer, imported)`` node indices, sorted, without duplicates.

    Raises:
        TypeError: ``max_modules`` not an int.
        ValueError: ``max_modules < 1``.

    Examples:
        >>> from jaxla.datasets import stdlib_import_graph
        >>> names, edges = stdlib_import_graph(max_modules=50)
        >>> names.shape, edges.shape[1]
        ((50,), 2)
        >>> bool((edges[:, 0] != edges[:, 1]).all())
        True
    """
    fn = "jaxla.datasets.stdlib_import_graph"
    if max_modules is not None:
        max_modules = _checks.check_int(max_modules, fn, "max_modules", min=1)
    names, edges = _import_graph(max_modules)
    return np.asarray(names, dtype=str), edges.copy()
