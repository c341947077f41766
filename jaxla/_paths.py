"""Paths of pytree leaves and the patterns that select them.

Several parts of jaxla choose leaves of a parameter pytree by name: LoRA targets, per-layer
curvature (``params_filter``), penalties that skip biases, weight-decay masks. They all use this
module, so a pattern means the same thing everywhere:

- A leaf's **path** is its key path joined with ``/``: dict keys and attribute names as they are,
  sequence indices as decimal numbers. ``{"dense": {"w": ...}, "blocks": [{"b": ...}]}`` has the
  paths ``"dense/w"`` and ``"blocks/0/b"``.
- A **pattern** is either a string, matched as a shell-style glob against the whole path
  (``fnmatch`` rules: ``*`` matches any run of characters, ``/`` included, ``?`` one character,
  ``[...]`` a set), or a compiled regular expression (``re.compile(...)``), matched with
  ``re.fullmatch``. ``"*/w"`` selects every leaf named ``w``; ``re.compile(r"blocks/[0-3]/.*")``
  the first four blocks.

Only leaves are selected; a pattern that names an inner node (``"dense"``) matches nothing, since
no leaf's path equals it (use ``"dense/*"``).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from typing import Any

import jax

from jaxla import _checks

__all__ = [
    "Pattern",
    "check_patterns",
    "key_to_str",
    "leaf_paths",
    "matches",
    "nearest_paths",
    "path_str",
    "select",
]

Pattern = str | re.Pattern


def key_to_str(key: Any) -> str:
    """One key path entry as text: a dict key, an attribute name or a sequence index."""
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_str(path: Sequence[Any]) -> str:
    """A key path (as from ``jax.tree_util.tree_flatten_with_path``) joined with ``/``."""
    return "/".join(key_to_str(k) for k in path)


def leaf_paths(tree: Any) -> list[str]:
    """The paths of the leaves of ``tree``, in ``jax.tree_util.tree_leaves`` order."""
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def check_patterns(patterns: Any, fn: str, name: str) -> tuple[Pattern, ...]:
    """``patterns`` as a tuple of patterns; a single pattern is allowed; ``None`` gives ``()``."""
    if patterns is None:
        return ()
    if isinstance(patterns, str | re.Pattern):
        return (patterns,)
    if isinstance(patterns, Sequence) and all(isinstance(p, str | re.Pattern) for p in patterns):
        return tuple(patterns)
    _checks.fail(
        fn,
        f"`{name}` must be a glob string, a compiled regular expression or a sequence of them, "
        f"got {patterns!r}",
        TypeError,
    )


def matches(pattern: Pattern, path: str) -> bool:
    """Whether ``path`` matches ``pattern`` (a glob string or a compiled regular expression)."""
    if isinstance(pattern, re.Pattern):
        return pattern.fullmatch(path) is not None
    return fnmatch.fnmatchcase(path, pattern)


def _describe(pattern: Pattern) -> str:
    return f"re.compile({pattern.pattern!r})" if isinstance(pattern, re.Pattern) else repr(pattern)


def nearest_paths(pattern: Pattern, paths: Sequence[str], n: int = 5) -> list[str]:
    """Up to ``n`` of ``paths`` closest to ``pattern`` by text similarity (for error messages)."""
    text = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
    close = difflib.get_close_matches(text, list(paths), n=n, cutoff=0.0)
    return close or list(paths)[:n]


def select(
    tree: Any,
    include: Any = None,
    exclude: Any = None,
    *,
    fn: str,
    include_name: str = "include",
    exclude_name: str = "exclude",
    strict: bool = True,
) -> Any:
    """A pytree of Python bools shaped like ``tree``: True where a leaf is selected.

    A leaf is selected when its path matches one of ``include`` (every leaf when ``include`` is
    ``None``) and none of ``exclude``. With ``strict``, an ``include`` or ``exclude`` pattern that
    matches no leaf at all is an error naming the pattern and listing the nearest paths: a typo
    never silently selects nothing.
    """
    inc = None if include is None else check_patterns(include, fn, include_name)
    exc = check_patterns(exclude, fn, exclude_name)
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [path_str(p) for p, _ in flat]
    if strict:
        for name, pats in ((include_name, inc or ()), (exclude_name, exc)):
            for pat in pats:
                if not any(matches(pat, p) for p in paths):
                    near = ", ".join(repr(p) for p in nearest_paths(pat, paths))
                    _checks.fail(
                        fn,
                        f"`{name}` pattern {_describe(pat)} must match at least one leaf path, "
                        f"got no match; nearest paths: {near or '(the tree has no leaves)'}",
                    )
    chosen = [
        (inc is None or any(matches(p, path) for p in inc))
        and not any(matches(p, path) for p in exc)
        for path in paths
    ]
    return jax.tree_util.tree_unflatten(treedef, chosen)
