"""Low-rank adaptation (LoRA) of any parameter pytree.

A targeted weight ``W`` (d_in, d_out), used as ``y = x W``, is adapted to
``W + s * A B`` with ``A`` (d_in, r) and ``B`` (r, d_out) trainable and ``W`` frozen
(Hu et al. 2021). The scale is ``s = alpha / r``, or ``s = alpha / sqrt(r)`` for rank-stabilized
LoRA (``rslora=True``, Kalajdzievski 2023); ``alpha`` defaults to ``r``, so ``s = 1``.

Dimension letters: ``d_in`` input features (rows of ``W``), ``d_out`` output features
(columns), ``r`` the adapter rank.

**Choosing the weights.** :func:`spec` selects leaves by path pattern, with the meaning patterns
have everywhere in jaxla (:mod:`jaxla._paths`): a leaf's path joins its keys with ``/``
(``"blocks_0/attention/query/w"``, ``"params/Dense_0/kernel"``); a string pattern is a
shell-style glob matched against the whole path (``*`` also crosses ``/``), a compiled regular
expression is matched with ``re.fullmatch``. A pattern that matches nothing is an error listing
the nearest paths (unless ``strict=False``). Only 2-D floating matrices are adapted; a selected
leaf of any other rank or dtype is an error (narrow the pattern or use ``exclude``). The result,
a :class:`LoraSpec`, is hashable data: pass it to jitted functions as a static argument or as a
regular one (it is a pytree without leaves).

**Adapters** are a flat dict from target path to ``{"a": (d_in, r), "b": (r, d_out)}``:
``{"layers_0/w": {"a": ..., "b": ...}}``. Their leaf paths (``"layers_0/w/a"``) are the target
path followed by ``a`` or ``b``, as a nested dict would give.

**Applying them**, two ways:

* :func:`apply` replaces each targeted leaf by a :class:`LoRAWeight` ``(w, a, b, scale)``, a pytree
  node. The layers of :mod:`jaxla.nn` (dense, mlp, glu/swiglu, multi-head attention and the
  transformer models built from them) and any code that writes ``x @ w`` compute
  ``x @ w + s * (x @ a) @ b`` without forming ``a @ b``: the efficient training path.
* :func:`merge` returns plain parameters with ``W + s * A B`` (computed in float32 or wider, cast
  back to ``W``'s dtype): works with any model function (Flax's ``apply`` included) and costs
  nothing at inference. :func:`unmerge` undoes it; :func:`check_merge` measures how far the
  merged model's outputs are from the factored one's.

**Training**, two ways (examples in :func:`optimizer`):

* differentiate a loss of the ``adapters`` dict alone, ``loss(apply(base, adapters, spec))``, and
  train it with any optax optimizer: gradients and optimizer state exist only for adapters; or
* train the adapted parameters from :func:`apply` with :func:`optimizer`, which wraps an optax
  transformation so that only the ``a``/``b`` leaves move and hold state.

**Initializations** (:func:`init`): ``"default"`` (as PEFT: ``A`` uniform in
``+-1/sqrt(d_in)``, ``B = 0``, so the adapted model equals the base model exactly at step 0),
``"gaussian"`` (``A`` normal with standard deviation ``1/r``, ``B = 0``) and ``"pissa"``
(Meng et al. 2024: ``s A B`` is the rank-``r`` truncated SVD of ``W``, found by
:func:`jaxla.linalg.randomized_svd`, and the frozen base becomes the residual ``W - s A B``).

**Files**: :func:`save` writes adapters and their spec to one ``.npz`` file, without the base
and without pickle; :func:`load` reads and validates it. :func:`extract` turns a fine-tuned
model into adapters (truncated SVD of each weight difference).

References:
    E. J. Hu et al., "LoRA: Low-rank adaptation of large language models", ICLR 2022.
    D. Kalajdzievski, "A rank stabilization scaling factor for fine-tuning with LoRA",
    arXiv:2312.03732, 2023.
    F. Meng, Z. Wang, M. Zhang, "PiSSA: Principal singular values and singular vectors adaptation
    of large language models", NeurIPS 2024.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxla import _checks, _paths
from jaxla._checks import shape_of as _shape
from jaxla._lora_weight import LoRAWeight
from jaxla._lora_weight import _unflatten as _lora_node
from jaxla._numerics import matmul
from jaxla.linalg import lowrank
from jaxla.linalg.operators import LinearOperator

__all__ = [
    "LoRAWeight",
    "LoraSpec",
    "LoraSummary",
    "LoraSummaryRow",
    "LoraTarget",
    "apply",
    "check_merge",
    "extract",
    "init",
    "load",
    "merge",
    "optimizer",
    "save",
    "spec",
    "summary",
    "unmerge",
    "with_dropout",
]

_MODULE = "jaxla.lora"
_FORMAT = "jaxla.lora"
_VERSION = 1
_META_KEY = "__metadata__"
_METHODS = ("default", "gaussian", "pissa")
_NATIVE = ("float16", "float32", "float64")  # dtypes numpy stores and reads as they are


# --------------------------------------------------------------------------------------------
# the spec


class LoraTarget(NamedTuple):
    """One adapted weight of a :class:`LoraSpec`."""

    path: str  # leaf path, e.g. "layers_0/w"
    shape: tuple[int, int]  # (d_in, d_out) of the weight
    rank: int  # r, 1 <= r <= min(d_in, d_out)
    alpha: float  # scale numerator: s = alpha / r (alpha / sqrt(r) with rslora)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """Which weights are adapted, with which rank and alpha: hashable, static data.

    A read-only mapping from target path to :class:`LoraTarget` (``spec["layers_0/w"]``,
    ``"layers_0/w" in spec``, ``len(spec)``, iteration over the paths), in the leaf order of the
    parameters it was made from. Equal specs compare and hash equal, so a spec can be a static
    argument of ``jax.jit``; it is also a pytree without leaves.

    Attributes:
        targets: The adapted weights, in leaf order.
        rslora: Whether the scale is ``alpha / sqrt(r)`` (rank-stabilized) instead of
            ``alpha / r``.
    """

    targets: tuple[LoraTarget, ...]
    rslora: bool = False

    @property
    def paths(self) -> tuple[str, ...]:
        """The target paths, in leaf order."""
        return tuple(t.path for t in self.targets)

    def __getitem__(self, path: str) -> LoraTarget:
        for t in self.targets:
            if t.path == path:
                return t
        raise KeyError(path)

    def __contains__(self, path: object) -> bool:
        return any(t.path == path for t in self.targets)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.targets)

    def scale(self, path: str) -> float:
        """The scale ``s`` of the target at ``path``: ``alpha / r`` or ``alpha / sqrt(r)``."""
        t = self[path]
        return _scale(t.rank, t.alpha, self.rslora)


def _scale(rank: int, alpha: float, rslora: bool) -> float:
    return float(alpha) / (math.sqrt(rank) if rslora else rank)


def _dtype(x: Any) -> Any:
    dt = getattr(x, "dtype", None)
    return jnp.dtype(dt) if dt is not None else np.asarray(x).dtype


def _is_float(dtype: Any) -> bool:
    return jnp.issubdtype(dtype, jnp.floating)


def _check_spec(value: Any, fn: str, name: str = "spec") -> LoraSpec:
    if not isinstance(value, LoraSpec):
        _checks.fail(
            fn, f"`{name}` must be a LoraSpec (from jaxla.lora.spec), got {type(value).__name__}",
            TypeError,
        )
    return value


def _pattern_dict(value: Any, fn: str, name: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str | re.Pattern) for k in value
    ):
        _checks.fail(
            fn,
            f"`{name}` must be a dict mapping glob strings or compiled regular expressions to "
            f"values, got {value!r}",
            TypeError,
        )
    return dict(value)


def _check_matrix(path: str, leaf: Any, fn: str, name: str) -> tuple[int, int]:
    """Require a 2-D floating leaf; return its shape."""
    shape, dtype = _shape(leaf), _dtype(leaf)
    hint = f"narrow the pattern or add {path!r} to `exclude`"
    if not _is_float(dtype):
        _checks.fail(
            fn,
            f"`{name}` must select only floating-point weight matrices, got {path!r} with dtype "
            f"{dtype}; {hint}",
            TypeError,
        )
    if len(shape) != 2:
        _checks.fail(
            fn,
            f"`{name}` must select only 2-D weight matrices (d_in, d_out), got {path!r} with "
            f"shape {shape}; {hint}",
        )
    return shape  # type: ignore[return-value]


def spec(
    params: Any,
    targets: Any,
    *,
    rank: int = 8,
    alpha: float | None = None,
    exclude: Any = (),
    rank_pattern: Mapping[Any, int] | None = None,
    alpha_pattern: Mapping[Any, float] | None = None,
    rslora: bool = False,
    strict: bool = True,
) -> LoraSpec:
    """Choose the weights of ``params`` to adapt, and their ranks and alphas.

    A leaf is targeted when its path matches one of ``targets`` and none of ``exclude``. Its
    rank is the value of the first pattern of ``rank_pattern`` (in the dict's order) that
    matches its path, else ``rank``; its alpha the value of the first matching pattern of
    ``alpha_pattern``, else ``alpha``, else its own rank (scale 1). Only 2-D floating matrices
    ``(d_in, d_out)`` are adapted.

    Args:
        params: Parameter pytree (arrays, or ``jax.ShapeDtypeStruct`` leaves from
            ``jax.eval_shape``): jaxla.nn, Flax ``{"params": ...}`` or any nested dict/list.
        targets: A glob string, a compiled regular expression, or a sequence of them (see the
            module docstring), e.g. ``"*/w"`` or ``("*/query/w", "*/value/w")``.
        rank: Default rank ``r`` (static int >= 1).
        alpha: Default alpha (> 0); ``None`` gives each target ``alpha = r`` (scale 1).
        exclude: Patterns of leaves not to adapt.
        rank_pattern: ``{pattern: rank}`` overrides, first match wins.
        alpha_pattern: ``{pattern: alpha}`` overrides, first match wins.
        rslora: Scale ``alpha / sqrt(r)`` (rank-stabilized LoRA) instead of ``alpha / r``.
        strict: A pattern of ``targets``, ``exclude``, ``rank_pattern`` or ``alpha_pattern``
            that matches no leaf (for the two dicts: no targeted leaf) is an error listing the
            nearest paths. With ``strict=False`` it is ignored, and an empty spec may result.

    Returns:
        :class:`LoraSpec` with one :class:`LoraTarget` ``(path, shape, rank, alpha)`` per
        adapted weight, in leaf order.

    Raises:
        ValueError: a pattern that matches nothing (``strict``); no leaf left after ``exclude``
            (``strict``); a targeted leaf that is not 2-D; a rank above ``min(d_in, d_out)``.
        TypeError: malformed patterns; a targeted leaf that is not floating; non-int ranks.

    Examples:
        >>> import jax
        >>> import jaxla.lora as lora
        >>> from jaxla.nn import mlp_init
        >>> params = mlp_init(jax.random.key(0), [8, 32, 32, 4])
        >>> s = lora.spec(params, "*/w", rank=4, exclude="layers_2/*",
        ...               rank_pattern={"layers_1/*": 2})
        >>> [(t.path, t.shape, t.rank, t.alpha) for t in s.targets]
        [('layers_0/w', (8, 32), 4, 4.0), ('layers_1/w', (32, 32), 2, 2.0)]
        >>> lora.spec(params, "*/kernel")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: jaxla.lora.spec: `targets` pattern '*/kernel' must match at least one ...
    """
    fn = f"{_MODULE}.spec"
    strict = _checks.check_bool(strict, fn, "strict")
    rslora = _checks.check_bool(rslora, fn, "rslora")
    rank = _checks.check_int(rank, fn, "rank", min=1)
    if alpha is not None:
        alpha = _checks.check_positive(alpha, fn, "alpha")
    include = _paths.check_patterns(targets, fn, "targets")
    if not include:
        _checks.fail(fn, f"`targets` must hold at least one pattern, got {targets!r}")
    exclude = _paths.check_patterns(exclude, fn, "exclude")
    ranks = _pattern_dict(rank_pattern, fn, "rank_pattern")
    ranks = {k: _checks.check_int(v, fn, f"rank_pattern[{k!r}]", min=1) for k, v in ranks.items()}
    alphas = _pattern_dict(alpha_pattern, fn, "alpha_pattern")
    alphas = {k: _checks.check_positive(v, fn, f"alpha_pattern[{k!r}]") for k, v in alphas.items()}

    chosen = _paths.select(
        params, include, exclude, fn=fn, include_name="targets", exclude_name="exclude",
        strict=strict,
    )
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    picked = [
        (_paths.path_str(p), leaf)
        for (p, leaf), keep in zip(flat, jax.tree_util.tree_leaves(chosen), strict=True)
        if keep
    ]
    if strict and not picked:
        _checks.fail(
            fn,
            "`exclude` must leave at least one leaf selected by `targets`, got every selected "
            f"leaf excluded by {exclude!r}",
        )
    if strict and picked:
        by_path = {path: 0 for path, _ in picked}
        for name, patterns in (("rank_pattern", ranks), ("alpha_pattern", alphas)):
            if patterns:
                _paths.select(by_path, list(patterns), fn=fn, include_name=name)

    out = []
    for path, leaf in picked:
        shape = _check_matrix(path, leaf, fn, "targets")
        r, source = rank, "rank"
        for pat, value in ranks.items():
            if _paths.matches(pat, path):
                r, source = value, f"rank_pattern[{pat!r}]"
                break
        if r > min(shape):
            _checks.fail(
                fn,
                f"`{source}` must be at most min(d_in, d_out)={min(shape)} for {path!r} of shape "
                f"{shape}, got {r}",
            )
        a = float(r) if alpha is None else alpha
        for pat, value in alphas.items():
            if _paths.matches(pat, path):
                a = value
                break
        out.append(LoraTarget(path, shape, r, float(a)))
    return LoraSpec(tuple(out), rslora)


# --------------------------------------------------------------------------------------------
# summary


class LoraSummaryRow(NamedTuple):
    """One adapted weight in a :class:`LoraSummary`."""

    path: str  # leaf path
    shape: tuple[int, int]  # (d_in, d_out)
    rank: int  # r
    alpha: float  # alpha
    scale: float  # s = alpha / r (alpha / sqrt(r) with rslora)
    params: int  # adapter parameters r * (d_in + d_out)


class LoraSummary(NamedTuple):
    """What a :class:`LoraSpec` adapts, with parameter counts; ``str()`` gives a table."""

    rows: tuple[LoraSummaryRow, ...]  # one per target, in leaf order
    trainable: int  # adapter parameters, sum of rows' params
    total: int  # base parameters (every leaf) plus adapter parameters
    fraction: float  # trainable / total

    def __str__(self) -> str:
        head = ("path", "shape", "rank", "alpha", "scale", "adapter params")
        body = [
            (r.path, f"{r.shape[0]}x{r.shape[1]}", str(r.rank), f"{r.alpha:g}", f"{r.scale:.4g}",
             f"{r.params:,}")
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

        def line(cells: tuple[str, ...]) -> str:
            parts = [c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
            return "  ".join(parts).rstrip()

        rule = "-" * len(line(head))
        total = (f"trainable {self.trainable:,} of {self.total:,} parameters "
                 f"({100 * self.fraction:.3f}%) in {len(self.rows)} adapted weights")
        return "\n".join([line(head), rule, *(line(b) for b in body), rule, total])


def summary(params: Any, spec: LoraSpec) -> LoraSummary:
    """Rows (path, shape, rank, alpha, scale, adapter parameters) and totals of a spec.

    Args:
        params: The base parameters the spec was made for (arrays or shape structs).
        spec: From :func:`spec`.

    Returns:
        :class:`LoraSummary` ``(rows, trainable, total, fraction)``; ``total`` counts every leaf
        of ``params`` plus the adapters, as PEFT's ``print_trainable_parameters`` does.

    Raises:
        TypeError: ``spec`` is not a LoraSpec.
        ValueError: ``params`` without a target of ``spec`` or with another shape there.

    Examples:
        >>> import jax
        >>> import jaxla.lora as lora
        >>> from jaxla.nn import mlp_init
        >>> params = mlp_init(jax.random.key(0), [8, 32, 4])
        >>> info = lora.summary(params, lora.spec(params, "*/w", rank=2, alpha=4.0))
        >>> print(info)
        path        shape  rank  alpha  scale  adapter params
        -----------------------------------------------------
        layers_0/w   8x32     2      4      2              80
        layers_1/w   32x4     2      4      2              72
        -----------------------------------------------------
        trainable 152 of 572 parameters (26.573%) in 2 adapted weights
    """
    fn = f"{_MODULE}.summary"
    _check_spec(spec, fn)
    leaves, _, _ = _locate(params, spec, fn, "params")
    rows = tuple(
        LoraSummaryRow(t.path, t.shape, t.rank, t.alpha, _scale(t.rank, t.alpha, spec.rslora),
                       t.rank * (t.shape[0] + t.shape[1]))
        for t in spec.targets
    )
    trainable = sum(r.params for r in rows)
    total = sum(math.prod(_shape(leaf)) for leaf in leaves) + trainable
    return LoraSummary(rows, trainable, total, trainable / total if total else 0.0)


# --------------------------------------------------------------------------------------------
# validation shared by apply / merge / unmerge / init / save


def _locate(tree: Any, spec: LoraSpec, fn: str, name: str) -> tuple[list[Any], Any, dict]:
    """Leaves, treedef and ``{path: index}`` of ``tree``; every target present, shapes match."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [_paths.path_str(p) for p, _ in flat]
    index = {p: i for i, p in enumerate(paths)}
    leaves = [leaf for _, leaf in flat]
    for t in spec.targets:
        if t.path not in index:
            near = ", ".join(repr(p) for p in _paths.nearest_paths(t.path, paths))
            _checks.fail(
                fn,
                f"`{name}` must have a leaf at every target path of `spec`, got none at "
                f"{t.path!r}; nearest paths: {near or '(the tree has no leaves)'}",
            )
        shape = _shape(leaves[index[t.path]])
        if shape != t.shape:
            _checks.fail(
                fn,
                f"`{name}` leaf {t.path!r} must have the shape {t.shape} recorded in `spec`, "
                f"got {shape}",
            )
    return leaves, treedef, index


def _check_adapters(adapters: Any, spec: LoraSpec, fn: str) -> None:
    doc = "a dict mapping each target path of `spec` to {'a': (d_in, r), 'b': (r, d_out)}"
    if not isinstance(adapters, Mapping):
        _checks.fail(fn, f"`adapters` must be {doc}, got {type(adapters).__name__}", TypeError)
    missing = [p for p in spec.paths if p not in adapters]
    if missing:
        _checks.fail(
            fn, f"`adapters` must have an entry for every target of `spec`, got none for "
            f"{missing}"
        )
    extra = sorted(str(k) for k in adapters if k not in spec)
    if extra:
        _checks.fail(
            fn, f"`adapters` must hold only the targets of `spec` {list(spec.paths)}, got also "
            f"{extra}"
        )
    for t in spec.targets:
        entry = adapters[t.path]
        if not isinstance(entry, Mapping) or set(entry) != {"a", "b"}:
            got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
            _checks.fail(fn, f"`adapters[{t.path!r}]` must be a dict with 'a' and 'b', got {got}")
        (d_in, d_out), r = t.shape, t.rank
        for part, want in (("a", (d_in, r)), ("b", (r, d_out))):
            value = entry[part]
            if not _is_float(_dtype(value)):
                _checks.fail(
                    fn, f"`adapters[{t.path!r}]['{part}']` must have a floating dtype, got "
                    f"{_dtype(value)}", TypeError,
                )
            if _shape(value) != want:
                letters = "(d_in, r)" if part == "a" else "(r, d_out)"
                _checks.fail(
                    fn,
                    f"`adapters[{t.path!r}]['{part}']` must have shape {letters}={want} for the "
                    f"rank r={r} of `spec`, got shape {_shape(value)}",
                )


# --------------------------------------------------------------------------------------------
# initialization


@functools.partial(jax.jit, static_argnames=("d_in", "rank", "dtype", "gaussian"))
def _random_a(key, *, d_in, rank, dtype, gaussian):
    if gaussian:
        a = jax.random.normal(key, (d_in, rank), jnp.float32) * (1.0 / rank)
    else:
        bound = 1.0 / math.sqrt(d_in)
        a = jax.random.uniform(key, (d_in, rank), jnp.float32, -bound, bound)
    return a.astype(dtype)


@functools.partial(
    jax.jit, static_argnames=("rank", "dtype", "oversamples", "power_iters", "method")
)
def _pissa(key, w, scale, *, rank, dtype, oversamples, power_iters, method):
    cdt = _checks.compute_dtype(w.dtype)
    wc = w.astype(cdt)
    # Products with W^T run on an explicit transposed copy: on CPU a matmul contracting the
    # leading axis of a large matrix is several times slower than one on a copy, and the SVD
    # needs about as many products with W^T as with W.
    wt = jax.lax.optimization_barrier(wc.T)
    op = LinearOperator(
        _shape(wc), jnp.dtype(cdt), functools.partial(matmul, wc), functools.partial(matmul, wt)
    )
    res = lowrank.randomized_svd(
        key, op, rank, oversamples=oversamples, power_iters=power_iters, method=method
    )
    root = jnp.sqrt(res.s / jnp.asarray(scale, cdt))
    a = (res.u * root[None, :]).astype(dtype)
    b = (root[:, None] * res.vt).astype(dtype)
    # the residual is taken against the stored (rounded) factors: base + s A B == W to rounding
    low = matmul(a.astype(cdt), b.astype(cdt)) * jnp.asarray(scale, cdt)
    return (wc - low).astype(w.dtype), a, b


def init(
    key: jax.Array,
    params: Any,
    spec: LoraSpec,
    *,
    method: str = "default",
    dtype: Any = None,
    pissa_power_iters: int = 2,
    pissa_oversamples: int = 10,
    pissa_method: str = "block_krylov",
) -> tuple[Any, dict[str, dict[str, jax.Array]]]:
    """Initial adapters for the targets of ``spec``, and the frozen base they adapt.

    Every method returns ``(base, adapters)``, so one call fits all three:

    * ``"default"`` (PEFT's): ``A`` uniform in ``[-1/sqrt(d_in), 1/sqrt(d_in)]`` (PyTorch's
      Kaiming-uniform with ``a = sqrt(5)``), ``B = 0``. ``base`` is ``params`` itself, and the
      adapted model equals the base model exactly at step 0.
    * ``"gaussian"``: ``A`` normal with standard deviation ``1 / r`` (PEFT's
      ``init_lora_weights="gaussian"``), ``B = 0``; ``base`` is ``params``.
    * ``"pissa"`` (Meng et al. 2024): with ``U S V^T`` the rank-``r`` truncated SVD of ``W``,
      ``A = U sqrt(S / s)`` and ``B = sqrt(S / s) V^T``, so that ``s A B = U S V^T`` whatever
      the scale ``s``; the base leaf becomes the residual ``W - s A B`` (so
      ``base + s A B = W``: the adapted model starts equal to the original). The SVD is
      :func:`jaxla.linalg.randomized_svd` (``pissa_method``, ``pissa_power_iters``,
      ``pissa_oversamples``): a 4096 x 4096 float32 weight at ``r = 16`` takes well under a
      second on a CPU, and its residual's Frobenius norm is within 1% of the exact truncated
      SVD's on matrices with a decaying spectrum (checked in the tests; more power iterations
      tighten it). ``W`` is computed in float32 when stored in float16/bfloat16.

    Args:
        key: PRNG key (split once per target, in leaf order).
        params: The parameters ``spec`` was made for.
        spec: From :func:`spec`.
        method: ``"default"``, ``"gaussian"`` or ``"pissa"``.
        dtype: Floating dtype of the adapters; default each weight's dtype.
        pissa_power_iters: Power (or Krylov) iterations of the randomized SVD (static int >= 0).
        pissa_oversamples: Extra sketch columns of the randomized SVD (static int >= 0).
        pissa_method: ``"block_krylov"`` or ``"power"`` (see :func:`jaxla.linalg.randomized_svd`).

    Returns:
        ``(base, adapters)``: ``base`` has the structure of ``params`` (the same leaves except
        the PiSSA residuals); ``adapters`` maps each target path to ``{"a": (d_in, r),
        "b": (r, d_out)}``.

    Raises:
        TypeError: a bad ``key``, ``spec`` or ``dtype``.
        ValueError: an unknown method; ``params`` that do not match ``spec``; NaN/Inf in a
            weight for ``"pissa"`` (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxla.lora as lora
        >>> from jaxla.nn import mlp, mlp_init
        >>> params = mlp_init(jax.random.key(0), [8, 32, 4])
        >>> s = lora.spec(params, "*/w", rank=4)
        >>> base, adapters = lora.init(jax.random.key(1), params, s)
        >>> adapters["layers_0/w"]["a"].shape, adapters["layers_0/w"]["b"].shape
        ((8, 4), (4, 32))
        >>> x = jnp.ones((3, 8))
        >>> bool(jnp.array_equal(mlp(lora.apply(base, adapters, s), x), mlp(params, x)))
        True

        PiSSA moves the principal part of a weight into the adapters:

        >>> s0 = lora.spec(params, "layers_0/w", rank=4)
        >>> base, adapters = lora.init(jax.random.key(1), params, s0, method="pissa")
        >>> merged = lora.merge(base, adapters, s0)
        >>> print(bool(jnp.allclose(merged["layers_0"]["w"], params["layers_0"]["w"], atol=1e-5)))
        True
    """
    fn = f"{_MODULE}.init"
    _checks.check_key(key, fn)
    _check_spec(spec, fn)
    method = _checks.check_option(method, _METHODS, fn, "method")
    if dtype is not None:
        try:
            dt = jnp.dtype(dtype)
        except TypeError:
            _checks.fail(fn, f"`dtype` must be a floating dtype, got {dtype!r}", TypeError)
        if not _is_float(dt):
            _checks.fail(fn, f"`dtype` must be a floating dtype, got {dt}", TypeError)
        dtype = dt
    power_iters = _checks.check_int(pissa_power_iters, fn, "pissa_power_iters", min=0)
    oversamples = _checks.check_int(pissa_oversamples, fn, "pissa_oversamples", min=0)
    pissa_method = _checks.check_option(
        pissa_method, ("block_krylov", "power"), fn, "pissa_method"
    )
    leaves, treedef, index = _locate(params, spec, fn, "params")
    keys = jax.random.split(key, max(len(spec), 1))
    adapters: dict[str, dict[str, jax.Array]] = {}
    for k, t in zip(keys, spec.targets, strict=False):
        i = index[t.path]
        w = _checks.as_float_array(leaves[i], fn, f"params[{t.path!r}]")
        adt = jnp.dtype(w.dtype) if dtype is None else dtype
        if method == "pissa":
            _checks.check_finite(w, fn, f"params[{t.path!r}]")
            leaves[i], a, b = _pissa(
                k, w, _scale(t.rank, t.alpha, spec.rslora), rank=t.rank, dtype=adt,
                oversamples=oversamples, power_iters=power_iters, method=pissa_method,
            )
        else:
            a = _random_a(k, d_in=t.shape[0], rank=t.rank, dtype=adt,
                          gaussian=method == "gaussian")
            b = jnp.zeros((t.rank, t.shape[1]), adt)
        adapters[t.path] = {"a": a, "b": b}
    return jax.tree_util.tree_unflatten(treedef, leaves), adapters


# --------------------------------------------------------------------------------------------
# apply, merge, unmerge


def _check_rate(rate: Any, fn: str, name: str) -> float:
    if isinstance(rate, jax.core.Tracer):
        _checks.fail(fn, f"`{name}` must be a static Python float, got a traced value", TypeError)
    try:
        r = float(rate)
    except (TypeError, ValueError):
        _checks.fail(fn, f"`{name}` must be a float in [0, 1), got {rate!r}", TypeError)
    if not 0.0 <= r < 1.0:
        _checks.fail(fn, f"`{name}` must be in [0, 1), got {rate!r}")
    return r


def apply(
    base: Any,
    adapters: Mapping[str, Mapping[str, jax.Array]],
    spec: LoraSpec,
    *,
    dropout_rate: float = 0.0,
    key: jax.Array | None = None,
) -> Any:
    """Adapted parameters: each target leaf becomes a :class:`LoRAWeight` ``(w, a, b, scale)``.

    The :mod:`jaxla.nn` layers, and any model code that multiplies ``x @ w``, then compute
    ``x @ w + s * (x @ a) @ b`` without forming the (d_in, d_out) product ``a @ b``. Pure and
    cheap (no arithmetic): call it inside the loss to differentiate with respect to
    ``adapters`` only. Works under ``jit`` and ``vmap``. Target weights that the model uses as
    ``x @ w`` (dense layers, attention projections) or as an embedding table read through
    :func:`jaxla.nn.embedding` / :func:`jaxla.nn.embedding_attend` (rows ``w[ids] + s *
    a[ids] @ b``), as :func:`jaxla.nn.decoder_lm` reads its token and position tables; a
    weight used otherwise (indexed directly, transposed, reshaped) does not
    accept a ``LoRAWeight``: :func:`merge` works for those.

    Args:
        base: The frozen parameters (from :func:`init`).
        adapters: ``{path: {"a": (d_in, r), "b": (r, d_out)}}`` for every target of ``spec``.
        spec: From :func:`spec`.
        dropout_rate: LoRA dropout (static float in [0, 1)): the input of each ``a`` path is
            dropped with this probability (and rescaled), the ``w`` path sees it whole. Needs
            ``key``; see :func:`with_dropout`.
        key: PRNG key for the dropout masks (split once per target).

    Returns:
        A pytree of the structure of ``base`` with :class:`LoRAWeight` nodes at the targets.

    Raises:
        TypeError: a bad ``spec``, ``adapters`` or ``key``.
        ValueError: ``base``/``adapters`` that do not match ``spec``; a bad dropout rate.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxla.lora as lora
        >>> from jaxla.nn import dense, dense_init
        >>> params = {"proj": dense_init(jax.random.key(0), 6, 5)}
        >>> s = lora.spec(params, "proj/w", rank=2)
        >>> adapters = {"proj/w": {"a": jnp.ones((6, 2)), "b": jnp.ones((2, 5))}}
        >>> adapted = lora.apply(params, adapters, s)
        >>> w = adapted["proj"]["w"]
        >>> type(w).__name__, w.shape, w.a.shape, w.scale
        ('LoRAWeight', (6, 5), (6, 2), 1.0)
        >>> x = jnp.ones((4, 6))
        >>> y = dense(adapted["proj"], x)
        >>> bool(jnp.allclose(y, dense(lora.merge(params, adapters, s)["proj"], x), atol=1e-5))
        True
    """
    fn = f"{_MODULE}.apply"
    _check_spec(spec, fn)
    rate = _check_rate(dropout_rate, fn, "dropout_rate")
    if rate > 0.0:
        _checks.check_key(key, fn)
    leaves, treedef, index = _locate(base, spec, fn, "base")
    _check_adapters(adapters, spec, fn)
    for t in spec.targets:
        entry = adapters[t.path]
        leaves[index[t.path]] = LoRAWeight(
            leaves[index[t.path]], entry["a"], entry["b"], _scale(t.rank, t.alpha, spec.rslora)
        )
    adapted = jax.tree_util.tree_unflatten(treedef, leaves)
    if rate > 0.0:
        adapted = with_dropout(adapted, key, rate=rate)
    return adapted


def _is_lora(x: Any) -> bool:
    return isinstance(x, LoRAWeight)


def with_dropout(adapted: Any, key: jax.Array, *, rate: float) -> Any:
    """Attach LoRA dropout (a key per :class:`LoRAWeight`, and the rate) to adapted parameters.

    Use it inside a loss that receives adapted parameters (the :func:`optimizer` way of
    training): ``model(with_dropout(params, key, rate=0.1), x)``. ``rate=0`` removes dropout.
    Each ``LoRAWeight`` gets its own key (``jax.random.split(key, n)`` in leaf order) and drops
    entries of the input of its ``a`` path; under ``vmap`` over examples every example shares
    the mask of its layer.

    Args:
        adapted: Parameters from :func:`apply`.
        key: PRNG key.
        rate: Drop probability, a static float in [0, 1).

    Returns:
        ``adapted`` with ``key`` and ``dropout_rate`` set on every ``LoRAWeight``.

    Raises:
        TypeError: a bad ``key`` or ``rate``.
        ValueError: ``rate`` outside [0, 1); no ``LoRAWeight`` in ``adapted``.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxla.lora as lora
        >>> from jaxla.nn import dense, dense_init
        >>> params = {"proj": dense_init(jax.random.key(0), 6, 5)}
        >>> s = lora.spec(params, "proj/w", rank=2)
        >>> base, adapters = lora.init(jax.random.key(1), params, s)
        >>> adapters["proj/w"]["b"] = jnp.ones((2, 5))
        >>> adapted = lora.apply(base, adapters, s)
        >>> x = jnp.ones((4, 6))
        >>> y1 = dense(lora.with_dropout(adapted, jax.random.key(2), rate=0.5)["proj"], x)
        >>> y0 = dense(adapted["proj"], x)
        >>> bool(jnp.allclose(y1, y0)), y1.shape
        (False, (4, 5))
    """
    fn = f"{_MODULE}.with_dropout"
    rate = _check_rate(rate, fn, "rate")
    _checks.check_key(key, fn)
    nodes = [x for x in jax.tree_util.tree_leaves(adapted, is_leaf=_is_lora) if _is_lora(x)]
    if not nodes:
        _checks.fail(
            fn, "`adapted` must contain LoRAWeight nodes (from jaxla.lora.apply), got none"
        )
    keys = iter(jax.random.split(key, len(nodes)))

    def attach(x: Any) -> Any:
        if not _is_lora(x):
            return x
        k = next(keys)
        return LoRAWeight(x.w, x.a, x.b, x.scale, key=k if rate > 0.0 else None,
                          dropout_rate=rate)

    return jax.tree_util.tree_map(attach, adapted, is_leaf=_is_lora)


@jax.jit
def _add_low_rank(w, a, b, scale):
    cdt = _checks.compute_dtype(jnp.result_type(w, a, b))
    low = matmul(a.astype(cdt), b.astype(cdt))
    return (w.astype(cdt) + jnp.asarray(scale, cdt) * low).astype(w.dtype)


def _merge(tree: Any, adapters: Any, spec: LoraSpec, fn: str, name: str, sign: float) -> Any:
    _check_spec(spec, fn)
    leaves, treedef, index = _locate(tree, spec, fn, name)
    _check_adapters(adapters, spec, fn)
    for t in spec.targets:
        i = index[t.path]
        w = _checks.as_float_array(leaves[i], fn, f"{name}[{t.path!r}]")
        entry = adapters[t.path]
        scale = sign * _scale(t.rank, t.alpha, spec.rslora)
        leaves[i] = _add_low_rank(w, entry["a"], entry["b"], scale)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def merge(base: Any, adapters: Mapping[str, Mapping[str, jax.Array]], spec: LoraSpec) -> Any:
    """Plain parameters with each target ``W`` replaced by ``W + s A B``.

    The sum is computed in float32 (float64 for float64 weights; float16/bfloat16 are upcast)
    and cast back to ``W``'s dtype. The result has the structure of ``base`` and works with any
    model function (Flax's ``apply`` included), at no extra cost per call.

    Args:
        base: The frozen parameters.
        adapters: ``{path: {"a": (d_in, r), "b": (r, d_out)}}``.
        spec: From :func:`spec`.

    Returns:
        Parameters like ``base``, the targets merged, each in its original dtype.

    Raises:
        TypeError: a bad ``spec`` or ``adapters``.
        ValueError: ``base``/``adapters`` that do not match ``spec``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> import jaxla.lora as lora
        >>> base = {"w": jnp.zeros((3, 2))}
        >>> s = lora.spec(base, "w", rank=1, alpha=2.0)  # scale 2
        >>> adapters = {"w": {"a": jnp.array([[1.0], [2.0], [3.0]]), "b": jnp.array([[1.0, -1.0]])}}
        >>> np.asarray(lora.merge(base, adapters, s)["w"]).tolist()
        [[2.0, -2.0], [4.0, -4.0], [6.0, -6.0]]
    """
    return _merge(base, adapters, spec, f"{_MODULE}.merge", "base", 1.0)


def unmerge(merged: Any, adapters: Mapping[str, Mapping[str, jax.Array]], spec: LoraSpec) -> Any:
    """The base parameters back from merged ones: each target ``W`` becomes ``W - s A B``.

    Exact up to the rounding of the merge and of this subtraction (in float32, about
    ``1e-7 * (|W| + s |A B|)`` per entry).

    Args:
        merged: Parameters from :func:`merge`.
        adapters: The adapters that were merged.
        spec: The spec they were merged with.

    Returns:
        Parameters like ``merged``, the targets unmerged.

    Raises:
        TypeError, ValueError: as :func:`merge`.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxla.lora as lora
        >>> base = {"w": jax.random.normal(jax.random.key(0), (4, 3))}
        >>> s = lora.spec(base, "w", rank=2)
        >>> adapters = {"w": {"a": jnp.ones((4, 2)), "b": jnp.ones((2, 3))}}
        >>> back = lora.unmerge(lora.merge(base, adapters, s), adapters, s)
        >>> bool(jnp.allclose(back["w"], base["w"], atol=1e-6))
        True
    """
    return _merge(merged, adapters, spec, f"{_MODULE}.unmerge", "merged", -1.0)


def check_merge(
    apply_fn: Callable[[Any, Any], Any],
    base: Any,
    adapters: Mapping[str, Mapping[str, jax.Array]],
    spec: LoraSpec,
    probe: Any,
) -> float:
    """Largest absolute output difference between the merged and the factored model.

    Evaluates ``apply_fn(merge(base, adapters, spec), probe)`` and
    ``apply_fn(apply(base, adapters, spec), probe)`` and returns ``max |difference|`` over every
    output entry (outputs may be pytrees). A value near the float rounding of the outputs means
    merging is safe; a large one reveals a model function that uses a weight other than through
    ``x @ w`` (a transposed or reshaped use, say), which :func:`merge` would change silently.
    Called eagerly (it returns a Python float).

    Args:
        apply_fn: ``apply_fn(params, probe) -> outputs``. The factored call passes
            :class:`LoRAWeight` nodes: the :mod:`jaxla.nn` layers and code that computes
            ``x @ w`` accept them.
        base: The frozen parameters.
        adapters: The adapters.
        spec: From :func:`spec`.
        probe: Inputs passed to ``apply_fn`` (e.g. a small batch).

    Returns:
        The largest absolute difference, a Python float (``nan`` if an output is not finite).

    Raises:
        TypeError: ``apply_fn`` is not callable or fails on :class:`LoRAWeight` nodes.
        ValueError: as :func:`merge`; outputs of different structures or shapes.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxla.lora as lora
        >>> from jaxla.nn import mlp, mlp_init
        >>> params = mlp_init(jax.random.key(0), [8, 16, 4])
        >>> s = lora.spec(params, "*/w", rank=2)
        >>> base, adapters = lora.init(jax.random.key(1), params, s)
        >>> adapters = {p: {"a": v["a"], "b": jnp.ones_like(v["b"])} for p, v in adapters.items()}
        >>> print(lora.check_merge(mlp, base, adapters, s, jnp.ones((5, 8))) < 1e-5)
        True
    """
    fn = f"{_MODULE}.check_merge"
    if not callable(apply_fn):
        _checks.fail(fn, f"`apply_fn` must be callable, got {apply_fn!r}", TypeError)
    merged_out = apply_fn(merge(base, adapters, spec), probe)
    adapted = apply(base, adapters, spec)
    try:
        factored_out = apply_fn(adapted, probe)
    except (TypeError, AttributeError) as exc:
        _checks.fail(
            fn,
            "`apply_fn` must accept LoRAWeight nodes in place of weights (use jaxla.nn layers or "
            f"`x @ w`; for other code compare merged outputs directly), got {exc}",
            TypeError,
        )
    m_leaves, m_def = jax.tree_util.tree_flatten(merged_out)
    f_leaves, f_def = jax.tree_util.tree_flatten(factored_out)
    if m_def != f_def:
        _checks.fail(
            fn, f"`apply_fn` must return outputs of one structure, got {m_def} and {f_def}"
        )
    worst = 0.0
    for m, f in zip(m_leaves, f_leaves, strict=True):
        m64, f64 = np.asarray(m, np.float64), np.asarray(f, np.float64)
        if m64.shape != f64.shape:
            _checks.fail(
                fn, f"`apply_fn` must return outputs of one shape, got {m64.shape} and "
                f"{f64.shape}"
            )
        if m64.size:
            diff = float(np.max(np.abs(m64 - f64)))
            if math.isnan(diff):
                return math.nan
            worst = max(worst, diff)
    return worst


# --------------------------------------------------------------------------------------------
# extract


@functools.partial(jax.jit, static_argnames=("rank",))
def _extract_leaf(w0, w1, *, rank):
    cdt = _checks.compute_dtype(jnp.result_type(w0, w1))
    delta = w1.astype(cdt) - w0.astype(cdt)
    u, s, vt = lowrank.truncated_svd(delta, rank)
    root = jnp.sqrt(s)
    a, b = u * root[None, :], root[:, None] * vt
    norm = jnp.linalg.norm(delta)
    resid = jnp.linalg.norm(delta - matmul(a, b))
    err = jnp.where(norm > 0, resid / jnp.where(norm > 0, norm, 1), jnp.zeros((), cdt))
    return a.astype(w0.dtype), b.astype(w0.dtype), err


def extract(
    base: Any, finetuned: Any, rank: int, *, targets: Any = None
) -> tuple[dict[str, dict[str, jax.Array]], dict[str, jax.Array]]:
    """Adapters that approximate a fine-tuning: truncated SVD of each weight difference.

    For each selected weight, ``Delta = W_finetuned - W_base = U S V^T`` and ``A = U_r sqrt(S_r)``,
    ``B = sqrt(S_r) V_r^T`` (exact SVD, :func:`jaxla.linalg.truncated_svd`): ``A B`` is the best
    rank-``r`` approximation of ``Delta`` in the Frobenius norm (Eckart-Young), so the reported
    error is the smallest any rank-``r`` adapter can reach. The adapters are for scale 1: use
    them with ``spec(base, list(adapters), rank=rank)`` (default alpha, no rslora).

    Args:
        base: Parameters before fine-tuning.
        finetuned: Parameters after, the same structure and shapes.
        rank: Adapter rank ``r`` (static int >= 1), at most ``min(d_in, d_out)`` of every
            selected weight.
        targets: Patterns of the weights to extract (strict: each must match); default every
            2-D floating leaf.

    Returns:
        ``(adapters, errors)``: ``adapters`` maps each selected path to ``{"a": (d_in, r),
        "b": (r, d_out)}`` in the weight's dtype; ``errors`` maps it to the relative Frobenius
        error ``||Delta - A B||_F / ||Delta||_F``, a () array (0 where ``Delta = 0``).

    Raises:
        TypeError: non-int ``rank``; a selected leaf that is not floating.
        ValueError: trees of different structures or shapes; a rank above ``min(d_in, d_out)``;
            a pattern that matches nothing; NaN/Inf (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxla.lora as lora
        >>> base = {"w": jax.random.normal(jax.random.key(0), (6, 5)), "b": jnp.zeros(5)}
        >>> delta = jnp.outer(jnp.arange(6.0), jnp.ones(5))  # rank 1
        >>> tuned = {"w": base["w"] + delta, "b": base["b"] + 1.0}
        >>> adapters, errors = lora.extract(base, tuned, 1)
        >>> list(adapters), bool(errors["w"] < 1e-5)
        (['w'], True)
    """
    fn = f"{_MODULE}.extract"
    rank = _checks.check_int(rank, fn, "rank", min=1)
    flat0, def0 = jax.tree_util.tree_flatten_with_path(base)
    flat1, def1 = jax.tree_util.tree_flatten_with_path(finetuned)
    if def0 != def1:
        _checks.fail(
            fn, "`finetuned` must have the tree structure of `base`, got a different structure "
            f"(leaf paths {_paths.leaf_paths(finetuned)[:5]} vs {_paths.leaf_paths(base)[:5]})"
        )
    if targets is None:
        chosen = [_is_float(_dtype(leaf)) and len(_shape(leaf)) == 2 for _, leaf in flat0]
    else:
        sel = _paths.select(base, targets, None, fn=fn, include_name="targets")
        chosen = jax.tree_util.tree_leaves(sel)
    adapters: dict[str, dict[str, jax.Array]] = {}
    errors: dict[str, jax.Array] = {}
    for (p, w0), (_, w1), keep in zip(flat0, flat1, chosen, strict=True):
        if not keep:
            continue
        path = _paths.path_str(p)
        shape = _check_matrix(path, w0, fn, "targets")
        if _shape(w1) != shape:
            _checks.fail(
                fn, f"`finetuned` leaf {path!r} must have the shape {shape} of `base`, got "
                f"{_shape(w1)}"
            )
        if not _is_float(_dtype(w1)):
            _checks.fail(
                fn, f"`finetuned` leaf {path!r} must have a floating dtype, got {_dtype(w1)}",
                TypeError,
            )
        if rank > min(shape):
            _checks.fail(
                fn, f"`rank` must be at most min(d_in, d_out)={min(shape)} for {path!r} of shape "
                f"{shape}, got {rank}"
            )
        _checks.check_finite(w0, fn, f"base[{path!r}]")
        _checks.check_finite(w1, fn, f"finetuned[{path!r}]")
        a, b, err = _extract_leaf(jnp.asarray(w0), jnp.asarray(w1), rank=rank)
        adapters[path] = {"a": a, "b": b}
        errors[path] = err
    if not adapters:
        _checks.fail(fn, "`base` must have at least one 2-D floating leaf to extract, got none")
    return adapters, errors


# --------------------------------------------------------------------------------------------
# optax


def _labels(tree: Any) -> Any:
    """"lora" for the ``a``/``b`` children of every LoRAWeight, "frozen" for every other leaf."""

    def label(x: Any) -> Any:
        if _is_lora(x):
            key = None if x.key is None else "frozen"
            return _lora_node((x.scale, x.dropout_rate), ("frozen", "lora", "lora", key))
        return "frozen"

    return jax.tree_util.tree_map(label, tree, is_leaf=_is_lora)


def optimizer(
    tx: optax.GradientTransformation, adapted_params: Any
) -> optax.GradientTransformation:
    """An optax transformation over adapted parameters that trains only the adapters.

    ``optax.multi_transform`` with ``tx`` on the ``a``/``b`` leaves of every
    :class:`LoRAWeight` and ``optax.set_to_zero()`` on every other leaf: frozen leaves get zero
    updates (they stay bit-identical under ``optax.apply_updates``) and no optimizer state, so
    the state is the size of ``tx``'s state for the adapters alone. Under ``jit`` the gradient of
    the frozen weights is unused and XLA drops its computation; a step still returns the frozen
    weights, which costs a copy of them unless the parameters are donated
    (``jax.jit(step, donate_argnums=0)``).

    Alternatively, differentiate with respect to the ``adapters`` dict and use ``tx`` directly
    (second example): the same training, with the frozen base kept outside the optimizer and
    outside the step's outputs, the faster of the two.

    Args:
        tx: Any optax ``GradientTransformation`` (e.g. ``optax.adam(1e-3)``).
        adapted_params: Parameters from :func:`apply` (without dropout keys: attach them inside
            the loss with :func:`with_dropout`).

    Returns:
        An optax ``GradientTransformation``; ``init(adapted_params)`` and
        ``update(grads, state, params)`` take trees of the structure of ``adapted_params``.

    Raises:
        TypeError: ``tx`` is not a GradientTransformation.
        ValueError: no :class:`LoRAWeight` in ``adapted_params``, or one carrying a dropout key.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import optax
        >>> import jaxla.lora as lora
        >>> from jaxla.nn import mlp, mlp_init
        >>> params = mlp_init(jax.random.key(0), [4, 16, 2])
        >>> x = jax.random.normal(jax.random.key(1), (32, 4))
        >>> y = jnp.sin(x[:, :2])
        >>> s = lora.spec(params, "*/w", rank=2)
        >>> base, adapters = lora.init(jax.random.key(2), params, s)

        Training the adapted parameters with :func:`optimizer`:

        >>> adapted = lora.apply(base, adapters, s)
        >>> tx = lora.optimizer(optax.adam(1e-2), adapted)
        >>> state = tx.init(adapted)
        >>> def loss(p):
        ...     return jnp.mean((mlp(p, x) - y) ** 2)
        >>> @jax.jit
        ... def step(p, state):
        ...     g = jax.grad(loss)(p)
        ...     updates, state = tx.update(g, state, p)
        ...     return optax.apply_updates(p, updates), state
        >>> before = loss(adapted)
        >>> for _ in range(20):
        ...     adapted, state = step(adapted, state)
        >>> bool(loss(adapted) < before)
        True
        >>> bool(jnp.array_equal(adapted["layers_0"]["w"].w, base["layers_0"]["w"]))
        True

        Training the adapters dict directly, with any optimizer:

        >>> tx = optax.adam(1e-2)
        >>> state = tx.init(adapters)
        >>> def loss_ad(ad):
        ...     return loss(lora.apply(base, ad, s))
        >>> @jax.jit
        ... def step_ad(ad, state):
        ...     updates, state = tx.update(jax.grad(loss_ad)(ad), state, ad)
        ...     return optax.apply_updates(ad, updates), state
        >>> for _ in range(20):
        ...     adapters, state = step_ad(adapters, state)
        >>> bool(loss_ad(adapters) < before)
        True
    """
    fn = f"{_MODULE}.optimizer"
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        _checks.fail(
            fn, f"`tx` must be an optax GradientTransformation, got {type(tx).__name__}",
            TypeError,
        )
    nodes = [x for x in jax.tree_util.tree_leaves(adapted_params, is_leaf=_is_lora)
             if _is_lora(x)]
    if not nodes:
        _checks.fail(
            fn, "`adapted_params` must contain LoRAWeight nodes (from jaxla.lora.apply), got none"
        )
    if any(x.key is not None for x in nodes):
        _checks.fail(
            fn,
            "`adapted_params` must carry no dropout keys (attach them inside the loss with "
            "jaxla.lora.with_dropout), got LoRAWeight nodes with keys",
        )
    return optax.multi_transform({"lora": tx, "frozen": optax.set_to_zero()}, _labels)


# --------------------------------------------------------------------------------------------
# save / load


def _metadata(adapters: Any, spec: LoraSpec) -> dict[str, Any]:
    targets = []
    for i, t in enumerate(spec.targets):
        entry = {"path": t.path, "shape": list(t.shape), "rank": t.rank, "alpha": t.alpha}
        for part in ("a", "b"):
            value = adapters[t.path][part]
            entry[part] = {"key": f"t{i}_{part}", "shape": list(_shape(value)),
                           "dtype": str(_dtype(value))}
        targets.append(entry)
    return {"format": _FORMAT, "version": _VERSION, "rslora": spec.rslora, "targets": targets}


def save(path: str | os.PathLike, adapters: Mapping[str, Mapping[str, Any]],
         spec: LoraSpec) -> None:
    """Write adapters and their spec to one portable ``.npz`` file, without the base.

    The file holds one array per adapter factor (named ``t<i>_a``/``t<i>_b``) and a JSON
    document (the entry ``__metadata__``, a string array) with the format name and version, the
    ``rslora`` flag, and per target its path, weight shape, rank, alpha, and the names, shapes
    and dtypes of its arrays. No pickle: ``numpy.load(path, allow_pickle=False)`` reads it, and
    so does any zip + npy reader. bfloat16 and other non-numpy dtypes are stored as their bit
    patterns (unsigned integers) and restored by :func:`load`. The file is written to a
    temporary file in the same directory, then renamed over ``path`` (``os.replace``), so a
    crash never leaves a partial file.

    Args:
        path: Destination file name (written as given; ``.npz`` is conventional).
        adapters: ``{path: {"a": (d_in, r), "b": (r, d_out)}}`` concrete arrays.
        spec: Their spec.

    Raises:
        TypeError: a bad ``spec`` or ``adapters``.
        ValueError: adapters that do not match ``spec``, are traced (under ``jit``) or hold
            NaN/Inf.
        OSError: the file cannot be written.

    Examples:
        >>> import os, tempfile
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import jaxla.lora as lora
        >>> base = {"w": jnp.zeros((4, 3))}
        >>> s = lora.spec(base, "w", rank=2, alpha=4.0)
        >>> _, adapters = lora.init(jax.random.key(0), base, s)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     lora.save(os.path.join(d, "adapter.npz"), adapters, s)
        ...     back, s2 = lora.load(os.path.join(d, "adapter.npz"))
        >>> s2 == s, bool(jnp.array_equal(back["w"]["a"], adapters["w"]["a"]))
        (True, True)
    """
    fn = f"{_MODULE}.save"
    _check_spec(spec, fn)
    _check_adapters(adapters, spec, fn)
    for leaf in jax.tree_util.tree_leaves(dict(adapters)):
        if not _checks.is_concrete(leaf):
            _checks.fail(
                fn, "`adapters` must be concrete arrays (call save outside jit), got a traced "
                "value"
            )
    _checks.check_finite(dict(adapters), fn, "adapters")
    meta = _metadata(adapters, spec)
    arrays: dict[str, np.ndarray] = {_META_KEY: np.array(json.dumps(meta))}
    for t, entry in zip(spec.targets, meta["targets"], strict=True):
        for part in ("a", "b"):
            arr = np.asarray(adapters[t.path][part])
            if arr.dtype.name not in _NATIVE:
                arr = arr.view(f"uint{8 * arr.dtype.itemsize}")
            arrays[entry[part]["key"]] = arr
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".lora-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _bad_file(fn: str, path: str, what: str) -> NoReturn:
    _checks.fail(fn, f"`path` must be a LoRA adapter file written by jaxla.lora.save, got "
                 f"{path!r}: {what}")


def load(path: str | os.PathLike) -> tuple[dict[str, dict[str, jax.Array]], LoraSpec]:
    """Read adapters and their spec from a file written by :func:`save`.

    Everything is validated: the format name and version, the metadata's fields, and each
    array's presence, shape and dtype against the metadata; the file is read with
    ``allow_pickle=False``.

    Args:
        path: A file written by :func:`save`.

    Returns:
        ``(adapters, spec)``: ``{path: {"a": (d_in, r), "b": (r, d_out)}}`` as JAX arrays in
        their saved dtypes, and the :class:`LoraSpec` (paths, weight shapes, ranks, alphas,
        rslora). Apply them with ``apply(base, adapters, spec)`` or ``merge``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a file that is not a readable adapter file, or whose contents contradict
            its metadata.

    Examples:
        >>> import jaxla.lora as lora
        >>> lora.load("missing.npz")
        Traceback (most recent call last):
        ...
        FileNotFoundError: jaxla.lora.load: `path` must name an existing file, got 'missing.npz'
    """
    fn = f"{_MODULE}.load"
    name = os.fspath(path)
    if not os.path.isfile(name):
        _checks.fail(fn, f"`path` must name an existing file, got {name!r}", FileNotFoundError)
    try:
        npz = np.load(name, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        _bad_file(fn, name, f"not an .npz archive ({exc})")
    if not isinstance(npz, np.lib.npyio.NpzFile):
        _bad_file(fn, name, "a single .npy array, not an .npz archive")
    with npz:
        if _META_KEY not in npz.files:
            _bad_file(fn, name, f"no {_META_KEY!r} entry")
        try:
            meta = json.loads(str(npz[_META_KEY][()]))
        except (ValueError, TypeError) as exc:
            _bad_file(fn, name, f"unreadable metadata ({exc})")
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != _FORMAT:
            _bad_file(fn, name, f"metadata format {fmt!r} is not {_FORMAT!r}")
        if meta.get("version") != _VERSION:
            _bad_file(fn, name, f"format version {meta.get('version')!r}, this jaxla reads "
                      f"version {_VERSION}")
        try:
            rslora = meta["rslora"]
            entries = meta["targets"]
            if not isinstance(rslora, bool) or not isinstance(entries, list):
                raise TypeError("rslora must be a bool and targets a list")
            targets, adapters, used = [], {}, {_META_KEY}
            for e in entries:
                shape = tuple(int(d) for d in e["shape"])
                t = LoraTarget(str(e["path"]), shape, int(e["rank"]), float(e["alpha"]))
                if len(shape) != 2 or not 1 <= t.rank <= min(shape) or not t.alpha > 0:
                    raise ValueError(f"target {t.path!r} has shape {shape}, rank {t.rank} and "
                                     f"alpha {t.alpha}")
                if t.path in adapters:
                    raise ValueError(f"target {t.path!r} appears twice")
                want = {"a": (shape[0], t.rank), "b": (t.rank, shape[1])}
                entry = {}
                for part in ("a", "b"):
                    info = e[part]
                    key, dtype = str(info["key"]), jnp.dtype(info["dtype"])
                    if key not in npz.files:
                        raise ValueError(f"array {key!r} of {t.path!r} is missing")
                    arr = npz[key]
                    if dtype.name not in _NATIVE:
                        if arr.dtype != np.dtype(f"uint{8 * dtype.itemsize}"):
                            raise ValueError(f"array {key!r} has dtype {arr.dtype}, expected "
                                             f"the bits of {dtype}")
                        arr = arr.view(dtype)
                    if arr.dtype != dtype or tuple(arr.shape) != want[part] or tuple(
                            info["shape"]) != want[part]:
                        raise ValueError(
                            f"array {key!r} of {t.path!r} has shape {tuple(arr.shape)} and dtype "
                            f"{arr.dtype}, expected {want[part]} and {dtype}"
                        )
                    entry[part] = jnp.asarray(arr)
                    used.add(key)
                targets.append(t)
                adapters[t.path] = entry
            extra = sorted(set(npz.files) - used)
            if extra:
                raise ValueError(f"unexpected arrays {extra}")
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            _bad_file(fn, name, f"invalid contents ({detail})")
    return adapters, LoraSpec(tuple(targets), rslora)
