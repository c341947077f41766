"""Tests of the graph data sets: the karate club against networkx, the import graph against the
bytecode that CPython compiles from the same sources."""

from __future__ import annotations

import dis
import os
import sys
import sysconfig
import types
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from jaxla.datasets import _graphs as datasets
from tests.helpers import msg

SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def test_karate_club_matches_networkx():
    edges, factions = datasets.karate_club()
    assert edges.shape == (78, 2) and edges.dtype == np.int64
    assert factions.shape == (34,) and factions.dtype == np.int64
    g = nx.karate_club_graph()
    assert {tuple(e) for e in edges.tolist()} == {tuple(sorted(e)) for e in g.edges}
    assert np.all(edges[:, 0] < edges[:, 1])
    assert edges.tolist() == sorted(edges.tolist())
    ref = [int(g.nodes[i]["club"] == "Officer") for i in range(34)]
    assert factions.tolist() == ref
    # the instructor and the administrator lead the two factions
    assert factions[0] == 0 and factions[33] == 1
    # every call returns fresh arrays
    edges[0, 0] = 99
    assert datasets.karate_club()[0][0, 0] == 0


def _stdlib_listing() -> tuple[dict[str, Path | None], set[str]]:
    """Module name -> source (None for compiled modules) and the packages, by walking the tree."""
    paths = sysconfig.get_paths()
    root = Path(paths["stdlib"])
    found: dict[str, Path | None] = {}
    packages = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        if rel and (not (here / "__init__.py").is_file() or rel[-1] in SKIP
                    or not rel[-1].isidentifier()):
            dirnames[:] = []
            continue
        for f in filenames:
            if f.endswith(".py") and f[:-3].isidentifier():
                if f == "__init__.py":
                    if rel:
                        found[".".join(rel)] = here / f
                        packages.add(".".join(rel))
                else:
                    found[".".join((*rel, f[:-3]))] = here / f
    compiled = set(sys.builtin_module_names)
    for key in ("stdlib", "platstdlib"):
        dyn = Path(paths[key]) / "lib-dynload"
        if dyn.is_dir():
            compiled |= {p.name.split(".")[0] for p in dyn.iterdir() if p.suffix == ".so"}
    for name in compiled:
        found.setdefault(name, None)
    return found, packages


def _longest(name: str, known) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in known:
            return ".".join(parts[:i])
    return None


def _bytecode_imports(path: Path, name: str, is_package: bool, known) -> set[str]:
    """The modules imported by ``name``, read from the IMPORT_NAME instructions of its bytecode."""
    code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    stack = [code]
    while stack:
        co = stack.pop()
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
        ins = list(dis.get_instructions(co))
        for i, op in enumerate(ins):
            if op.opname != "IMPORT_NAME":
                continue
            level, fromlist = ins[i - 2].argval, ins[i - 1].argval
            module = op.argval
            if level:
                parts = package.split(".") if package else []
                if level - 1 >= len(parts):
                    continue
                base = ".".join(parts[:len(parts) - level + 1] + ([module] if module else []))
            else:
                base = module
            if fromlist:
                for item in fromlist:
                    sub = f"{base}.{item}"
                    target = sub if item != "*" and sub in known else _longest(base, known)
                    if target:
                        out.add(target)
            else:
                target = _longest(base, known)
                if target:
                    out.add(target)
    out.discard(name)
    return out


def _order(name: str):
    return (name.count("."), any(p.startswith("_") for p in name.split(".")), name)


def _check_graph(names, edges, known, packages):
    n = len(names)
    assert names.ndim == 1 and edges.ndim == 2 and edges.shape[1] == 2
    assert edges.dtype == np.int64
    assert list(names) == sorted(set(names))
    assert edges.tolist() == sorted(map(list, {tuple(e) for e in edges.tolist()}))
    assert edges.min() >= 0 and edges.max() < n
    assert np.all(edges[:, 0] != edges[:, 1])
    index = {str(m): i for i, m in enumerate(names)}
    got = {(str(names[i]), str(names[j])) for i, j in edges}
    ref = set()
    for m in index:
        if known[m] is not None:
            ref |= {(m, t) for t in _bytecode_imports(known[m], m, m in packages, known)
                    if t in index}
    assert got == ref


def test_stdlib_import_graph_subset_matches_bytecode():
    known, packages = _stdlib_listing()
    names, edges = datasets.stdlib_import_graph(max_modules=40)
    assert names.shape == (40,)
    assert set(names.tolist()) == set(sorted(known, key=_order)[:40])
    _check_graph(names, edges, known, packages)
    assert len(edges) > 20
    again = datasets.stdlib_import_graph(max_modules=40)
    np.testing.assert_array_equal(again[0], names)
    np.testing.assert_array_equal(again[1], edges)
    edges[0] = -1  # returned arrays are copies
    assert datasets.stdlib_import_graph(max_modules=40)[1].min() >= 0


@pytest.mark.slow
def test_stdlib_import_graph_full_matches_bytecode():
    known, packages = _stdlib_listing()
    names, edges = datasets.stdlib_import_graph()
    assert set(names.tolist()) == set(known)
    assert len(names) > 500 and len(edges) > 2000
    _check_graph(names, edges, known, packages)
    index = {str(m): i for i, m in enumerate(names)}
    have = {(str(names[i]), str(names[j])) for i, j in edges}
    for edge in (("os", "sys"), ("json", "json.decoder"), ("json.decoder", "json.scanner"),
                 ("email.message", "email.utils"), ("asyncio.tasks", "asyncio.events")):
        assert edge in have, edge
    assert "sys" in index and "test.support" not in index
    # compiled modules have no out-edges
    assert not np.any(edges[:, 0] == index["sys"])


def test_stdlib_import_graph_errors():
    fn = "jaxla.datasets.stdlib_import_graph"
    with pytest.raises(ValueError, match=msg(f"{fn}: `max_modules` must be >= 1, got 0")):
        datasets.stdlib_import_graph(max_modules=0)
    with pytest.raises(TypeError, match=msg(f"{fn}: `max_modules` must be an int, got 2.5 "
                                            "(float)")):
        datasets.stdlib_import_graph(max_modules=2.5)
