"""Synthetic ratings with a known low-rank truth, for matrix factorization (see jaxla.datasets).

:func:`synthetic_ratings` draws a ``rank``-``r`` matrix ``truth = mean + b_u + b_i + U V^T`` of
``m`` users by ``n`` items, observes a random fraction ``density`` of its entries with additive
Gaussian noise of standard deviation ``noise``, and splits the observed entries into a training and
a test set. Everything is numpy, deterministic in ``seed`` (``numpy.random.default_rng(seed)``),
and returned as numpy arrays.

Dimension letters: ``m`` users, ``n`` items, ``r`` rank, ``k`` observed entries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxla import _checks

__all__ = ["SyntheticRatings", "synthetic_ratings"]

_FN = "jaxla.datasets.synthetic_ratings"


class SyntheticRatings(NamedTuple):
    """Observed ratings of a known low-rank matrix, in two representations (see
    :func:`synthetic_ratings`).

    Dense: ``ratings`` with the masks ``train_mask`` / ``test_mask`` (the form
    :func:`jaxla.models.als` takes). Coordinates: ``users``, ``items``, ``values``, ``is_test``
    list the same observed entries in row-major order (``ratings[users, items] == values``).
    """

    user_factors: np.ndarray  # (m, r) true user factors U
    item_factors: np.ndarray  # (n, r) true item factors V
    user_bias: np.ndarray  # (m,) true user biases b_u (zeros when bias_scale=0)
    item_bias: np.ndarray  # (n,) true item biases b_i (zeros when bias_scale=0)
    mean: float  # global offset
    truth: np.ndarray  # (m, n) noise-free mean + b_u[:, None] + b_i[None, :] + U @ V.T
    ratings: np.ndarray  # (m, n) truth + noise where observed, 0 elsewhere
    train_mask: np.ndarray  # (m, n) bool, observed entries of the training set
    test_mask: np.ndarray  # (m, n) bool, observed entries held out (disjoint from train_mask)
    users: np.ndarray  # (k,) int64 user index of each observed entry
    items: np.ndarray  # (k,) int64 item index of each observed entry
    values: np.ndarray  # (k,) observed (noisy) rating of each entry
    is_test: np.ndarray  # (k,) bool, the entry belongs to the test set
    noise: float  # standard deviation of the observation noise


def _fraction(value: Any, name: str, *, allow_zero: bool, allow_one: bool) -> float:
    """A number in (0, 1] / [0, 1) as the flags say."""
    v = _checks.check_positive(value, _FN, name, allow_zero=allow_zero)
    if v > 1 or (v == 1 and not allow_one):
        _checks.fail(_FN, f"`{name}` must be {'<= 1' if allow_one else '< 1'}, got {value!r}")
    return v


def synthetic_ratings(
    seed: int,
    n_users: int,
    n_items: int,
    rank: int,
    *,
    density: float = 0.1,
    noise: float = 0.1,
    test_fraction: float = 0.2,
    mean: float = 0.0,
    bias_scale: float = 0.0,
    dtype: Any = np.float32,
) -> SyntheticRatings:
    """Noisy observations of a random rank-``rank`` matrix, split into train and test entries.

    The truth is ``mean + b_u[:, None] + b_i[None, :] + U @ V.T`` with ``U`` (m, r) and ``V``
    (n, r) standard normal scaled by ``rank ** -0.25``, so every entry of ``U @ V.T`` has unit
    variance whatever the rank, and biases ``b_u``, ``b_i`` normal with standard deviation
    ``bias_scale``. Each entry is observed independently with probability ``density``; an observed
    entry holds ``truth + noise * z`` with ``z`` standard normal. Exactly
    ``round(test_fraction * k)`` of the ``k`` observed entries, chosen uniformly, form the test set.
    A model that recovers the truth exactly has a test RMSE of ``noise`` (up to sampling), the
    floor that fitted models are measured against.

    Args:
        seed: Seed of ``numpy.random.default_rng`` (an int >= 0): the same seed gives the same
            data on every machine.
        n_users: ``m``, the number of users (rows), >= 1.
        n_items: ``n``, the number of items (columns), >= 1.
        rank: ``r``, the rank of ``U @ V.T``, 1 <= r <= min(m, n).
        density: Probability that an entry is observed, in (0, 1].
        noise: Standard deviation of the observation noise, >= 0.
        test_fraction: Fraction of the observed entries held out as the test set, in [0, 1).
        mean: Global offset added to every entry.
        bias_scale: Standard deviation of the user and item biases, >= 0.
        dtype: Floating dtype of the returned factors, matrices and values (default float32).

    Returns:
        :class:`SyntheticRatings`: true factors ``user_factors`` (m, r), ``item_factors`` (n, r),
        ``user_bias`` (m,), ``item_bias`` (n,), ``mean``; the noise-free ``truth`` (m, n); the
        dense observed ``ratings`` (m, n) (0 where unobserved) with ``train_mask`` and
        ``test_mask`` (m, n) bool; the observed entries as coordinates ``users``, ``items``,
        ``values``, ``is_test`` (k,); and ``noise``.

    Raises:
        TypeError: a non-int ``seed``, size or rank; a non-floating ``dtype``.
        ValueError: a negative seed, sizes < 1, ``rank`` outside [1, min(m, n)], ``density``
            outside (0, 1], ``test_fraction`` outside [0, 1), negative ``noise`` or
            ``bias_scale``.

    Examples:
        >>> import numpy as np
        >>> from jaxla.datasets import synthetic_ratings
        >>> data = synthetic_ratings(0, 50, 40, 3, density=0.5, noise=0.1)
        >>> data.ratings.shape, data.user_factors.shape, data.item_factors.shape
        ((50, 40), (50, 3), (40, 3))
        >>> bool(np.all(data.ratings[data.users, data.items] == data.values))
        True
        >>> bool(np.any(data.train_mask & data.test_mask))
        False
        >>> resid = (data.ratings - data.truth)[data.train_mask]
        >>> print(round(float(np.std(resid)), 1))
        0.1
    """
    seed = _checks.check_int(seed, _FN, "seed", min=0)
    m = _checks.check_int(n_users, _FN, "n_users", min=1)
    n = _checks.check_int(n_items, _FN, "n_items", min=1)
    r = _checks.check_int(rank, _FN, "rank", min=1, max=min(m, n), max_doc="min(n_users, n_items)")
    density = _fraction(density, "density", allow_zero=False, allow_one=True)
    test_fraction = _fraction(test_fraction, "test_fraction", allow_zero=True,
                              allow_one=False)
    noise = _checks.check_positive(noise, _FN, "noise", allow_zero=True)
    bias_scale = _checks.check_positive(bias_scale, _FN, "bias_scale", allow_zero=True)
    try:
        mean = float(mean)
    except (TypeError, ValueError):
        _checks.fail(_FN, f"`mean` must be a real number, got {mean!r}", TypeError)
    if not np.isfinite(mean):
        _checks.fail(_FN, f"`mean` must be finite, got {mean!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not np.issubdtype(dt, np.floating):
        _checks.fail(_FN, f"`dtype` must be a floating dtype such as np.float32, got {dtype!r}",
                     TypeError)

    rng = np.random.default_rng(seed)
    scale = r ** -0.25
    u = rng.standard_normal((m, r)) * scale
    v = rng.standard_normal((n, r)) * scale
    bu = rng.standard_normal(m) * bias_scale
    bi = rng.standard_normal(n) * bias_scale
    truth = mean + bu[:, None] + bi[None, :] + u @ v.T
    observed = rng.random((m, n)) < density
    users, items = np.nonzero(observed)  # row-major order
    k = users.size
    values = truth[users, items] + noise * rng.standard_normal(k)
    n_test = round(test_fraction * k)
    is_test = np.zeros(k, dtype=bool)
    is_test[rng.permutation(k)[:n_test]] = True

    ratings = np.zeros((m, n), dt)
    ratings[users, items] = values
    train_mask = np.zeros((m, n), dtype=bool)
    test_mask = np.zeros((m, n), dtype=bool)
    train_mask[users[~is_test], items[~is_test]] = True
    test_mask[users[is_test], items[is_test]] = True
    return SyntheticRatings(
        user_factors=u.astype(dt),
        item_factors=v.astype(dt),
        user_bias=bu.astype(dt),
        item_bias=bi.astype(dt),
        mean=mean,
        truth=truth.astype(dt),
        ratings=ratings,
        train_mask=train_mask,
        test_mask=test_mask,
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        values=values.astype(dt),
        is_test=is_test,
        noise=noise,
    )
