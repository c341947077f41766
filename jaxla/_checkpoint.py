"""Checkpoint files: a ``.npz`` of pytree leaves plus JSON metadata, written atomically.

The public entry points are :func:`jaxla.train.save_checkpoint` and
:func:`jaxla.train.load_checkpoint`; this module holds the file format.

Format (version 1). One ``.npz`` archive (readable with ``numpy.load(path, allow_pickle=False)``)
holding:

- ``params_<i>`` and ``opt_state_<i>``: the ``i``-th leaf of each pytree, in
  ``jax.tree_util.tree_leaves`` order. Leaves whose dtype numpy cannot store natively (bfloat16,
  the float8 types) are stored as unsigned integers of the same width and viewed back on load;
  typed PRNG keys are stored as their ``jax.random.key_data``.
- ``metadata``: the UTF-8 bytes of a JSON object (``bytes(npz["metadata"]).decode()``) with
  ``format``, ``version``, ``step``, the ``path``/``shape``/``dtype`` of every leaf, the PRNG
  ``key`` (its implementation name and ``key_data`` as a list of integers, or ``null``), the
  ``history`` (each column as ``{"dtype": ..., "values": [...]}``, non-finite numbers as the
  strings ``"nan"``, ``"inf"``, ``"-inf"``, so the JSON is strict) and an ``extra`` object for
  the caller (``jaxla.train.fit`` records its run configuration there).

No pickle is involved at any point. A file is written to a temporary file in the destination
directory, flushed and ``fsync``-ed, then moved over the destination with ``os.replace`` (atomic
on POSIX and Windows) and the directory is ``fsync``-ed: a reader sees the old checkpoint or the
new one, never a partial file, whatever happens to the writing process.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxla import _checks, _paths

__all__ = [
    "FORMAT",
    "VERSION",
    "decode_history",
    "decode_key",
    "encode_history",
    "encode_key",
    "encode_tree",
    "read",
    "restore_tree",
    "write",
]

FORMAT = "jaxla.train.checkpoint"
VERSION = 1


# ---------------------------------------------------------------------------------------------
# Leaves


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode_leaf(leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A numpy array numpy can store, and the record needed to rebuild ``leaf``."""
    record: dict[str, Any] = {}
    if _is_key(leaf):
        record["key_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    arr = np.asarray(jax.device_get(leaf))
    record["shape"] = list(arr.shape)
    record["dtype"] = arr.dtype.name
    if np.dtype(arr.dtype.str) != arr.dtype:  # bfloat16, float8...: store the raw bits
        arr = arr.view(np.dtype(f"uint{8 * arr.dtype.itemsize}"))
    return arr, record


def _decode_leaf(arr: np.ndarray, record: dict[str, Any]) -> Any:
    if arr.dtype.name != record["dtype"]:
        arr = arr.view(jnp.dtype(record["dtype"]))
    out = jnp.asarray(arr)
    if "key_impl" in record:
        out = jax.random.wrap_key_data(out, impl=record["key_impl"])
    return out


def _leaf_dtype_name(leaf: Any) -> str | None:
    if _is_key(leaf):
        return None
    dtype = getattr(leaf, "dtype", None)
    return None if dtype is None else np.dtype(dtype).name


def encode_tree(tree: Any, prefix: str) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The leaves of ``tree`` as ``{f"{prefix}_{i}": array}`` and their records (path, shape...)."""
    arrays: dict[str, np.ndarray] = {}
    records: list[dict[str, Any]] = []
    for i, (path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(tree)[0]):
        arr, record = _encode_leaf(leaf)
        arrays[f"{prefix}_{i}"] = arr
        records.append({"path": _paths.path_str(path), **record})
    return arrays, records


def restore_tree(
    like: Any,
    records: list[dict[str, Any]],
    arrays: dict[str, np.ndarray],
    prefix: str,
    *,
    fn: str,
    name: str,
    path: str,
) -> Any:
    """The stored leaves in the structure of ``like``; a clear error when they do not fit."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    paths = [_paths.path_str(p) for p, _ in flat]
    stored = [r["path"] for r in records]
    if paths != stored:
        i = next(
            (j for j, (a, b) in enumerate(zip(paths, stored, strict=False)) if a != b),
            min(len(paths), len(stored)),
        )
        theirs = repr(stored[i]) if i < len(stored) else "no leaf"
        ours = repr(paths[i]) if i < len(paths) else "no leaf"
        _checks.fail(
            fn,
            f"`{name}` must have the leaf paths of the checkpoint {path!r} ({len(stored)} "
            f"leaves), got {len(paths)} leaves, first differing at leaf {i}: checkpoint has "
            f"{theirs}, `{name}` has {ours}",
        )
    leaves = []
    for i, ((_, leaf), record) in enumerate(zip(flat, records, strict=True)):
        shape = tuple(int(d) for d in np.shape(leaf))
        want_shape = tuple(record["shape"])
        dtype = _leaf_dtype_name(leaf)
        key_like = _is_key(leaf)
        if key_like:
            shape = tuple(int(d) for d in jax.random.key_data(leaf).shape)
        bad_dtype = dtype is not None and dtype != record["dtype"]
        if shape != want_shape or bad_dtype or key_like != ("key_impl" in record):
            got_dtype = "a PRNG key" if key_like else (dtype or type(leaf).__name__)
            want_dtype = "a PRNG key" if "key_impl" in record else record["dtype"]
            _checks.fail(
                fn,
                f"`{name}` leaf {record['path']!r} must have shape {want_shape} and dtype "
                f"{want_dtype} as in the checkpoint {path!r}, got shape {shape} and dtype "
                f"{got_dtype}",
            )
        leaves.append(_decode_leaf(arrays[f"{prefix}_{i}"], record))
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ---------------------------------------------------------------------------------------------
# Keys and history as JSON


def encode_key(key: Any) -> dict[str, Any] | None:
    if key is None:
        return None
    if _is_key(key):
        data = np.asarray(jax.random.key_data(key))
        return {"typed": True, "impl": str(jax.random.key_impl(key)), "shape": list(data.shape),
                "data": data.ravel().tolist()}
    data = np.asarray(key)
    return {"typed": False, "dtype": data.dtype.name, "shape": list(data.shape),
            "data": data.ravel().tolist()}


def decode_key(record: dict[str, Any] | None) -> Any:
    if record is None:
        return None
    if record["typed"]:
        data = np.asarray(record["data"], np.uint32).reshape(record["shape"])
        return jax.random.wrap_key_data(jnp.asarray(data), impl=record["impl"])
    return jnp.asarray(np.asarray(record["data"], record["dtype"]).reshape(record["shape"]))


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _number(v: Any) -> Any:
    return float(v) if isinstance(v, str) else v


def encode_history(history: dict[str, Any] | None) -> dict[str, Any]:
    out = {}
    for name, column in (history or {}).items():
        arr = np.asarray(column)
        out[str(name)] = {
            "dtype": arr.dtype.name,
            "values": [_json_number(v) for v in arr.ravel().tolist()],
        }
    return out


def decode_history(record: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        name: np.asarray([_number(v) for v in col["values"]], dtype=col["dtype"])
        for name, col in record.items()
    }


# ---------------------------------------------------------------------------------------------
# Files


def write(
    path: str | os.PathLike,
    params: Any,
    opt_state: Any,
    *,
    step: int,
    key: Any = None,
    history: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint atomically to ``path``; return the path as a string."""
    path = os.fspath(path)
    arrays, p_records = encode_tree(params, "params")
    s_arrays, s_records = encode_tree(opt_state, "opt_state")
    arrays.update(s_arrays)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "params": p_records,
        "opt_state": s_records,
        "key": encode_key(key),
        "history": encode_history(history),
        "extra": extra or {},
    }
    text = json.dumps(meta, allow_nan=False, separators=(",", ":"))
    arrays["metadata"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read(path: str | os.PathLike, *, fn: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and the arrays of the checkpoint at ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        _checks.fail(fn, f"`path` must name an existing checkpoint file, got {path!r}",
                     FileNotFoundError)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(bytes(arrays.pop("metadata")).decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        _checks.fail(fn, f"`path` must be a jaxla checkpoint (.npz with metadata), got {path!r} "
                         f"({type(exc).__name__}: {exc})")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        _checks.fail(fn, f"`path` must be a {FORMAT} file of version {VERSION}, got {path!r} "
                         f"(format {meta.get('format')!r}, version {meta.get('version')!r})")
    return meta, arrays
