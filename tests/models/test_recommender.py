"""Matrix-factorization recommender (jaxla.models.recommender) and its synthetic ratings.

References are independent: per-row ``numpy.linalg.solve`` of the regularized normal equations
for the ALS half-steps, the objective and RMSE recomputed in numpy, the nuclear norm from
``numpy.linalg.svd`` for the balancing, ``numpy.argsort`` for the recommendations, finite
differences for the gradient of the objective. Fits are shared through module-scoped fixtures so
that each compiled configuration is built once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify
from jax.test_util import check_grads

from jaxla.datasets import SyntheticRatings, synthetic_ratings
from jaxla.models import recommender as rec
from tests.helpers import msg

NOISE = 0.1
RANK = 3
SHAPE = (200, 150)
SMALL = (12, 10)


# ------------------------------------------------------------------------------------------------
# References (numpy, float64)


def np_solve_rows(w, t, x, lam):
    """Per-row regularized least squares, one ``np.linalg.solve`` per row."""
    out = np.zeros((w.shape[0], x.shape[1]))
    for a in range(w.shape[0]):
        obs = w[a] > 0
        xa, wa = x[obs], w[a, obs]
        gram = xa.T @ (wa[:, None] * xa) + lam[a] * np.eye(x.shape[1])
        out[a] = np.linalg.solve(gram, xa.T @ (wa * t[a, obs]))
    return out


def np_lams(w, reg, weighted):
    if weighted:
        return reg * np.maximum(w.sum(1), 1), reg * np.maximum(w.sum(0), 1)
    return np.full(w.shape[0], reg), np.full(w.shape[1], reg)


def np_objective(u, v, b, c, mean, r, w, reg, weighted=False):
    u, v, b, c, r, w = (np.asarray(a, np.float64) for a in (u, v, b, c, r, w))
    pred = float(mean) + b[:, None] + c[None, :] + u @ v.T
    e = np.where(w > 0, r - pred, 0.0)
    lu, lv = np_lams(w, reg, weighted)
    return (np.sum(w * e**2) + np.sum(lu * (np.sum(u**2, 1) + b**2))
            + np.sum(lv * (np.sum(v**2, 1) + c**2)))


def np_rmse(model, r, mask):
    u, v = np.asarray(model.user_factors, float), np.asarray(model.item_factors, float)
    pred = (float(model.mean) + np.asarray(model.user_bias, float)[:, None]
            + np.asarray(model.item_bias, float)[None, :] + u @ v.T)
    return np.sqrt(np.mean((np.asarray(r, float) - pred)[np.asarray(mask)] ** 2))


def _small_problem(seed, *, sparse_user=False):
    rng = np.random.default_rng(seed)
    m, n = SMALL
    r = rng.standard_normal((m, 2)) @ rng.standard_normal((2, n))
    r = r + 0.1 * rng.standard_normal((m, n))
    w = rng.random((m, n)) < 0.6
    w[:, :3] = True  # every user has at least 3 ratings
    w[:3, :] = True  # every item too
    if sparse_user:
        w[5] = False
        w[5, 4] = True  # user 5 has a single rating
    return r, w


# ------------------------------------------------------------------------------------------------
# Shared fits


@pytest.fixture(scope="module")
def data():
    return synthetic_ratings(0, *SHAPE, RANK, density=0.5, noise=NOISE)


@pytest.fixture(scope="module")
def model(data):
    return rec.als(data.ratings, data.train_mask, RANK, iters=20, key=jax.random.key(0))


@pytest.fixture(scope="module")
def gd_model(data):
    return rec.fit_gd(jax.random.key(0), data.ratings, data.train_mask, RANK, steps=500)


def _init(seed):
    rng = np.random.default_rng(seed)
    m, n = SMALL
    return {"user_factors": rng.standard_normal((m, 2)),
            "item_factors": rng.standard_normal((n, 2)),
            "user_bias": rng.standard_normal(m), "item_bias": rng.standard_normal(n)}


SMALL_ITERS = 4
SMALL_REG = 0.3


def _small_fit(r, w, *, reg=SMALL_REG, init=None, **kw):
    """ALS on the small float64 problem: plain ALS (no balancing), so every half-step is exact."""
    return rec.als(r, w, 2, reg=reg, iters=SMALL_ITERS, init=_init(5) if init is None else init,
                   balance=False, **kw)


@pytest.fixture(scope="module")
def small():
    r, w = _small_problem(1)
    r_nan = np.where(w, r, np.nan)  # unobserved entries are ignored, NaN included
    return r, w, _small_fit(r_nan, w)


# ------------------------------------------------------------------------------------------------
# Synthetic ratings


def test_synthetic_ratings_structure(data):
    m, n = SHAPE
    assert isinstance(data, SyntheticRatings)
    assert data.user_factors.shape == (m, RANK) and data.item_factors.shape == (n, RANK)
    assert data.truth.shape == data.ratings.shape == data.train_mask.shape == (m, n)
    for a in (data.user_factors, data.item_factors, data.truth, data.ratings, data.values):
        assert a.dtype == np.float32
    np.testing.assert_allclose(data.truth, data.user_factors.astype(float)
                               @ data.item_factors.astype(float).T, atol=1e-5)
    assert np.linalg.matrix_rank(data.truth.astype(float), tol=1e-3) == RANK
    # the two representations agree
    observed = data.train_mask | data.test_mask
    assert not np.any(data.train_mask & data.test_mask)
    users, items = np.nonzero(observed)
    np.testing.assert_array_equal(users, data.users)
    np.testing.assert_array_equal(items, data.items)
    np.testing.assert_array_equal(data.ratings[data.users, data.items], data.values)
    np.testing.assert_array_equal(data.test_mask[data.users, data.items], data.is_test)
    assert np.all(data.ratings[~observed] == 0)
    k = data.users.size
    assert abs(k / (m * n) - 0.5) < 0.02
    assert data.is_test.sum() == round(0.2 * k)
    # noise level and unit-variance entries
    resid = (data.ratings.astype(float) - data.truth)[observed]
    assert abs(np.std(resid) / NOISE - 1) < 0.03 and abs(np.mean(resid)) < 0.01
    assert 0.8 < np.std(data.truth) < 1.2
    assert data.noise == NOISE and data.mean == 0.0
    np.testing.assert_array_equal(data.user_bias, 0)


def test_synthetic_ratings_options():
    d = synthetic_ratings(3, 30, 20, 2, density=1.0, noise=0.0, test_fraction=0.0, mean=3.0,
                          bias_scale=0.5, dtype=np.float64)
    assert d.ratings.dtype == np.float64 and d.noise == 0.0
    assert d.train_mask.all() and not d.test_mask.any() and not d.is_test.any()
    ref = 3.0 + d.user_bias[:, None] + d.item_bias[None, :] + d.user_factors @ d.item_factors.T
    np.testing.assert_allclose(d.truth, ref, rtol=1e-12)
    np.testing.assert_array_equal(d.ratings, d.truth)
    assert 0.3 < np.std(d.user_bias) < 0.7
    again = synthetic_ratings(3, 30, 20, 2, density=1.0, noise=0.0, test_fraction=0.0, mean=3.0,
                              bias_scale=0.5, dtype=np.float64)
    for a, b in zip(d, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(synthetic_ratings(4, 30, 20, 2).ratings,
                              synthetic_ratings(3, 30, 20, 2).ratings)


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        ({"rank": 0}, ValueError, "`rank` must be >= 1, got 0"),
        ({"rank": 11}, ValueError, "`rank`=11 exceeds min(n_users, n_items)=10"),
        ({"density": 0.0}, ValueError, "`density` must be > 0 and finite, got 0.0"),
        ({"density": 1.5}, ValueError, "`density` must be <= 1, got 1.5"),
        ({"test_fraction": 1.0}, ValueError, "`test_fraction` must be < 1, got 1.0"),
        ({"noise": -0.1}, ValueError, "`noise` must be >= 0 and finite, got -0.1"),
        ({"seed": -1}, ValueError, "`seed` must be >= 0, got -1"),
        ({"seed": 1.5}, TypeError, "`seed` must be an int, got 1.5 (float)"),
        ({"dtype": np.int32}, TypeError,
         "`dtype` must be a floating dtype such as np.float32, got <class 'numpy.int32'>"),
    ],
)
def test_synthetic_ratings_errors(kwargs, exc, text):
    args = {"seed": 0, "n_users": 20, "n_items": 10, "rank": 2, **kwargs}
    with pytest.raises(exc, match=msg(f"jaxla.datasets.synthetic_ratings: {text}")):
        synthetic_ratings(args.pop("seed"), args.pop("n_users"), args.pop("n_items"),
                          args.pop("rank"), **args)


# ------------------------------------------------------------------------------------------------
# ALS


def test_als_heldout_rmse_within_ten_percent_of_noise(data, model):
    m, n = SHAPE
    assert model.user_factors.shape == (m, RANK) and model.item_factors.shape == (n, RANK)
    assert model.user_bias.shape == (m,) and model.item_bias.shape == (n,)
    assert model.objective.shape == model.train_rmse.shape == (21,)
    for leaf in (*model[:5], model.objective, model.train_rmse, model.grad_norm):
        assert leaf.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert bool(model.ok) and bool(model.converged) and float(model.grad_norm) < 1e-3
    test = float(rec.rmse(model, data.ratings, data.test_mask))
    np.testing.assert_allclose(test, np_rmse(model, data.ratings, data.test_mask), rtol=1e-5)
    assert test <= 1.1 * NOISE  # the acceptance bar
    train = np_rmse(model, data.ratings, data.train_mask)
    np.testing.assert_allclose(model.train_rmse[-1], train, rtol=1e-4)
    assert train < NOISE < test  # fitted noise on the training entries, not on the test entries
    # the recovered matrix is close to the truth everywhere, unobserved entries included
    pred = np.asarray(rec.predict_ratings(model), float)
    assert np.sqrt(np.mean((pred - data.truth) ** 2)) < 0.5 * NOISE


def test_als_objective_nonincreasing_and_recomputed(data, model, small):
    obj = np.asarray(model.objective, np.float64)
    assert np.all(np.diff(obj) <= 1e-6 * obj[0])  # float32: up to rounding
    ref = np_objective(model.user_factors, model.item_factors, model.user_bias, model.item_bias,
                       model.mean, data.ratings, data.train_mask, 0.1)
    np.testing.assert_allclose(obj[-1], ref, rtol=1e-4)
    r, w, m64 = small
    obj = np.asarray(m64.objective)
    assert m64.objective.dtype == jnp.float64
    assert np.all(np.diff(obj) <= 1e-12 * obj[0])  # float64: strictly by the algebra
    ref = np_objective(m64.user_factors, m64.item_factors, m64.user_bias, m64.item_bias, 0.0,
                       r, w, SMALL_REG)
    np.testing.assert_allclose(obj[-1], ref, rtol=1e-12)
    np.testing.assert_allclose(m64.train_rmse[-1], np_rmse(m64, r, w), rtol=1e-12)


def np_als(r, w, init, reg, iters, *, biases, weighted):
    """Plain ALS in numpy: per-row np.linalg.solve of the regularized normal equations."""
    wf = w.astype(float)
    m, n = w.shape
    lu, lv = np_lams(wf, reg, weighted)
    mean = r[w].mean() if biases else 0.0
    u, v = init["user_factors"], init["item_factors"]
    b, c = (init["user_bias"], init["item_bias"]) if biases else (np.zeros(m), np.zeros(n))
    history = [np_objective(u, v, b, c, mean, r, wf, reg, weighted)]
    for _ in range(iters):
        x = np.concatenate([v, np.ones((n, 1))], axis=1) if biases else v
        y = np_solve_rows(wf, r - mean - c[None, :], x, lu)
        u, b = (y[:, :-1], y[:, -1]) if biases else (y, b)
        x = np.concatenate([u, np.ones((m, 1))], axis=1) if biases else u
        y = np_solve_rows(wf.T, r.T - mean - b[None, :], x, lv)
        v, c = (y[:, :-1], y[:, -1]) if biases else (y, c)
        history.append(np_objective(u, v, b, c, mean, r, wf, reg, weighted))
    return u, v, b, c, mean, np.asarray(history)


def test_als_half_steps_equal_numpy_solves(small):
    r, w, out = small
    u, v, b, c, mean, history = np_als(r, w, _init(5), SMALL_REG, SMALL_ITERS, biases=False,
                                       weighted=False)
    for got, ref in zip(out[:5], (u, v, b, c, mean), strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.objective, history, rtol=1e-12)
    assert np.all(np.diff(history) <= 0)


def test_als_jit_vmap_biases_weighted_and_ok_flag():
    """jit(vmap) over two problems, with biases and ALS-WR weights: the first equals numpy's ALS,
    the second (reg=0 and a user with one rating) reports ok=False."""
    r, w = _small_problem(2)
    _, w_bad = _small_problem(2, sparse_user=True)
    rs = jnp.asarray(np.stack([np.where(w, r, np.nan), np.where(w_bad, r, np.nan)]))
    ws = jnp.asarray(np.stack([w, w_bad]))
    regs = jnp.array([SMALL_REG, 0.0])
    fit = jax.jit(jax.vmap(lambda r, w, reg: _small_fit(r, w, reg=reg, biases=True,
                                                        weighted_reg=True)))
    out = fit(rs, ws, regs)
    assert isinstance(out, rec.MatrixFactorization)
    assert out.user_factors.shape == (2, SMALL[0], 2) and out.item_bias.shape == (2, SMALL[1])
    assert out.objective.shape == (2, SMALL_ITERS + 1)
    np.testing.assert_array_equal(np.asarray(out.ok), [True, False])
    assert not bool(out.converged[1])
    u, v, b, c, mean, history = np_als(r, w, _init(5), SMALL_REG, SMALL_ITERS, biases=True,
                                       weighted=True)
    for got, ref in zip(out[:5], (u, v, b, c, mean), strict=True):
        np.testing.assert_allclose(np.asarray(got)[0], ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.objective[0], history, rtol=1e-12)
    assert np.all(np.diff(history) <= 0)


def test_als_balanced_factors(data, model):
    """Balanced factors: U^T U = V^T V and the penalty is 2 reg ||U V^T||_* (its minimum)."""
    u = np.asarray(model.user_factors, np.float64)
    v = np.asarray(model.item_factors, np.float64)
    gu, gv = u.T @ u, v.T @ v
    np.testing.assert_allclose(gu, gv, rtol=0, atol=1e-4 * np.abs(gu).max())
    nuclear = np.linalg.svd(u @ v.T, compute_uv=False).sum()
    np.testing.assert_allclose(np.sum(u**2) + np.sum(v**2), 2 * nuclear, rtol=1e-5)


def test_als_singular_raises_eagerly(small):
    r, w, _ = small
    zeros = (np.zeros((SMALL[0], 2)), np.zeros((SMALL[1], 2)))
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.als: `reg` must keep every normal equation solvable, got reg=0.0 with a "
            "singular or non-finite system (a user or item with fewer observed ratings than "
            "unknowns, or non-finite values); use reg > 0")):
        _small_fit(r, w, reg=0.0, init=zeros)


# ------------------------------------------------------------------------------------------------
# Gradient descent


def test_gd_reaches_the_als_objective(data, model, gd_model):
    assert gd_model.objective.shape == (501,) and gd_model.objective.dtype == jnp.float32
    assert bool(gd_model.ok)
    j_gd, j_als = float(gd_model.objective[-1]), float(model.objective[-1])
    assert j_als * (1 - 1e-4) <= j_gd <= 1.01 * j_als
    ref = np_objective(gd_model.user_factors, gd_model.item_factors, gd_model.user_bias,
                       gd_model.item_bias, 0.0, data.ratings, data.train_mask, 0.1)
    np.testing.assert_allclose(j_gd, ref, rtol=1e-4)
    # same model up to the rotation of the factors: compare the predictions
    diff = rec.predict_ratings(gd_model) - rec.predict_ratings(model)
    assert float(jnp.sqrt(jnp.mean(diff**2))) < 0.1 * NOISE
    assert float(rec.rmse(gd_model, data.ratings, data.test_mask)) <= 1.1 * NOISE
    assert float(gd_model.grad_norm) < 1e-2


# ------------------------------------------------------------------------------------------------
# Using a model


def test_predict_rmse_objective_against_numpy(data, model):
    u, v = np.asarray(model.user_factors, float), np.asarray(model.item_factors, float)
    full = np.asarray(rec.predict_ratings(model))
    np.testing.assert_allclose(full, u @ v.T, rtol=1e-5, atol=1e-5)
    users, items = data.users[:50], data.items[:50]
    pairs = rec.predict_ratings(model, users, items)
    assert pairs.shape == (50,)
    np.testing.assert_allclose(pairs, full[users, items], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rec.predict_ratings((u, v)), u @ v.T, rtol=1e-12)
    mask = data.test_mask.astype(np.float32)  # 0/1 weights: the same as the boolean mask
    np.testing.assert_allclose(rec.rmse(model, data.ratings, mask),
                               np_rmse(model, data.ratings, data.test_mask), rtol=1e-5)
    j = rec.mf_objective(model, data.ratings, data.train_mask, reg=0.1)
    np.testing.assert_allclose(j, model.objective[-1], rtol=1e-5)
    j = rec.mf_objective((u, v), data.ratings, data.train_mask, reg=0.7, weighted_reg=True)
    np.testing.assert_allclose(j, np_objective(u, v, np.zeros(len(u)), np.zeros(len(v)), 0.0,
                                               data.ratings, data.train_mask, 0.7, True),
                               rtol=1e-10)


def test_mf_objective_gradient():
    r, w = _small_problem(3)
    rng = np.random.default_rng(0)
    params = {"user_factors": rng.standard_normal((SMALL[0], 2)),
              "item_factors": rng.standard_normal((SMALL[1], 2)),
              "user_bias": rng.standard_normal(SMALL[0]),
              "item_bias": rng.standard_normal(SMALL[1])}

    def f(p):
        return rec.mf_objective(p, r, w, reg=0.3, weighted_reg=True)

    check_grads(jax.jit(f), (params,), order=1, modes=["rev"])
    np.testing.assert_allclose(f(params), np_objective(*params.values(), 0.0, r, w, 0.3, True),
                               rtol=1e-12)
    # the written-out gradient that the fits use equals the derivative of the objective
    wf = w.astype(float)
    lu, lv = np_lams(wf, 0.3, True)
    written = jax.jit(functools.partial(rec._objective, grad=True))
    _, _, g = written(params, np.where(w, r, 0.0), wf, 0.0, lu, lv, wf.sum())
    auto = jax.jit(jax.grad(f))(params)
    for k in params:
        np.testing.assert_allclose(g[k], auto[k], rtol=1e-12, atol=1e-12)


def test_recommend_excludes_seen_and_matches_argsort(data, model):
    pred = np.asarray(rec.predict_ratings(model), np.float64)
    seen = data.train_mask
    for user in (0, 7, 199):
        out = rec.recommend(model, user, 10, exclude_seen=seen)
        assert out.items.shape == out.scores.shape == (10,) and out.items.dtype == jnp.int32
        scores = np.where(seen[user], -np.inf, np.asarray(rec.predict_ratings(model))[user])
        ref = np.argsort(-scores, kind="stable")[:10]
        np.testing.assert_array_equal(out.items, ref)
        assert not np.any(seen[user, np.asarray(out.items)])
        np.testing.assert_allclose(out.scores, pred[user, ref], rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(np.asarray(out.scores)) <= 0)
        row = rec.recommend(model, jnp.int32(user), 10, exclude_seen=jnp.asarray(seen[user]))
        np.testing.assert_array_equal(row.items, out.items)
    # without exclusion: the top items of the whole row
    out = rec.recommend(model, 3, 5)
    np.testing.assert_array_equal(out.items, np.argsort(-np.asarray(
        rec.predict_ratings(model))[3], kind="stable")[:5])
    # vmap over users and jit with a traced user
    users = jnp.arange(4)
    batch = jax.jit(jax.vmap(lambda i: rec.recommend(model, i, 10, exclude_seen=seen)))(users)
    assert batch.items.shape == (4, 10)
    for i in range(4):
        np.testing.assert_array_equal(batch.items[i],
                                      rec.recommend(model, i, 10, exclude_seen=seen).items)


def test_recommend_fills_with_excluded_items_last():
    u = jnp.array([[1.0]])
    v = jnp.array([[3.0], [1.0], [2.0], [0.0]])
    seen = jnp.array([[True, False, True, True]])
    out = rec.recommend((u, v), 0, 3, exclude_seen=seen)
    assert out.items.tolist() == [1, 0, 2]
    assert out.scores[0] == 1.0 and np.all(np.isneginf(np.asarray(out.scores[1:])))


# ------------------------------------------------------------------------------------------------
# Errors


def _fit_errors(fn_name, call):
    r = np.zeros((6, 5))
    w = np.ones((6, 5), bool)
    key = jax.random.key(0)
    cases = [
        (lambda: call(r, w, 0, key=key), ValueError, "`rank` must be >= 1, got 0"),
        (lambda: call(r, w, 6, key=key), ValueError,
         "`rank`=6 exceeds min(n_users, n_items)=5"),
        (lambda: call(r, w, 2.0, key=key), TypeError, "`rank` must be an int, got 2.0 (float)"),
        (lambda: call(r, w[:5], 2, key=key), ValueError,
         "`ratings` and `mask` must have the same shape, got (6, 5) and (5, 5)"),
        (lambda: call(r[0], w[0], 2, key=key), ValueError,
         "`ratings` must be 2-D (n_users, n_items), got shape (5,)"),
        (lambda: call(r.astype(int), w, 2, key=key), TypeError,
         "`ratings` must have a real floating dtype, got integer or boolean dtype int64; cast it "
         "first, e.g. ratings.astype(jnp.float32)"),
        (lambda: call(r, w, 2, key=key, reg=-1.0), ValueError,
         "`reg` must be >= 0 and finite, got -1.0"),
        (lambda: call(r, np.where(w, -1.0, 0.0), 2, key=key), ValueError,
         "`mask` must be boolean (or 0/1, or nonnegative weights), got a negative entry -1.0"),
        (lambda: call(np.full((6, 5), np.nan), w, 2, key=key), ValueError,
         "`ratings` contains 30 NaN or Inf value(s); clean or mask them first"),
        (lambda: call(r, w, 2, key=None), TypeError,
         "`key` must be a JAX random key such as jax.random.key(0) when `init` is not given, "
         "got None"),
        (lambda: call(r, w, 2, key=np.zeros(3)), TypeError,
         "`key` must be a JAX random key such as jax.random.key(0), got ndarray (3,)"),
        (lambda: call(r, w, 2, init=(np.zeros((6, 3)), np.zeros((5, 3)))), ValueError,
         "`init` must hold user_factors (6, 2) and item_factors (5, 2) (n_users, n_items, rank), "
         "got (6, 3) and (5, 3)"),
        (lambda: call(r, w, 2, key=key, biases=1), TypeError,
         "`biases` must be a Python bool, got 1"),
        (lambda: call(r, np.eye(6, 5, dtype=bool), 2, key=key, reg=0.0), ValueError,
         "`mask` must observe at least 2 ratings of every user and item when reg=0 (rank 2), "
         "got 0 for user 5; use reg > 0"),
    ]
    for thunk, exc, text in cases:
        if fn_name.endswith("fit_gd") and "when reg=0" in text:
            continue  # gradient descent solves no normal equations
        with pytest.raises(exc, match=msg(f"{fn_name}: {text}")):
            thunk()


def test_als_errors():
    _fit_errors("jaxla.models.als", rec.als)
    r, w = np.zeros((6, 5)), np.ones((6, 5), bool)
    with pytest.raises(ValueError, match=msg("jaxla.models.als: `iters` must be >= 1, got 0")):
        rec.als(r, w, 2, iters=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.als: `mask` must observe at least 3 ratings of every user and item when "
            "reg=0 (rank 2 + 1 bias), got 2 for item 0; use reg > 0")):
        mask = np.ones((6, 5), bool)
        mask[2:, 0] = False
        rec.als(r, mask, 2, reg=0.0, biases=True, key=jax.random.key(0))


def test_fit_gd_errors():
    def call(r, w, rank, *, key=None, **kw):
        return rec.fit_gd(key, r, w, rank, **kw)

    _fit_errors("jaxla.models.fit_gd", call)
    r, w = np.zeros((6, 5)), np.ones((6, 5), bool)
    with pytest.raises(ValueError, match=msg("jaxla.models.fit_gd: `steps` must be >= 1, got 0")):
        rec.fit_gd(jax.random.key(0), r, w, 2, steps=0)
    with pytest.raises(TypeError, match=msg(
            "jaxla.models.fit_gd: `optimizer` must be an optax.GradientTransformation, got str")):
        rec.fit_gd(jax.random.key(0), r, w, 2, optimizer="adam")


def test_model_function_errors(model):
    r = np.zeros(SHAPE, np.float32)
    w = np.ones(SHAPE, bool)
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.rmse: `model` must have 10 users and 150 items (the shape of "
            "`ratings`), got user_factors (200, 3) and item_factors (150, 3)")):
        rec.rmse(model, r[:10], w[:10])
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.rmse: `mask` must select at least one rating, got an empty mask")):
        rec.rmse(model, r, ~w)
    with pytest.raises(TypeError, match=msg(
            "jaxla.models.rmse: `model` must be a MatrixFactorization or a (user_factors, "
            "item_factors) pair, got ndarray")):
        rec.rmse(np.zeros((3, 3)), r, w)
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.mf_objective: `model.user_factors` and `model.item_factors` must have "
            "the same number of columns (the rank), got shapes (200, 3) and (150, 2)")):
        rec.mf_objective((model.user_factors, model.item_factors[:, :2]), r, w)
    with pytest.raises(ValueError, match=msg("jaxla.models.recommend: `n`=151 exceeds the number "
                                             "of items=150")):
        rec.recommend(model, 0, 151)
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.recommend: `user` must be in [0, 199] (200 users), got 200")):
        rec.recommend(model, 200, 5)
    with pytest.raises(TypeError, match=msg(
            "jaxla.models.recommend: `user` must be an integer index (a scalar), got dtype "
            "float32")):
        rec.recommend(model, jnp.float32(1), 5)
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.recommend: `exclude_seen` must have shape (200, 150) (n_users, n_items) "
            "or (150,), got (3,)")):
        rec.recommend(model, 0, 5, exclude_seen=np.ones(3, bool))
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.predict_ratings: `users` and `items` must be given together, got users "
            "only")):
        rec.predict_ratings(model, np.arange(3))
    with pytest.raises(TypeError, match=msg(
            "jaxla.models.predict_ratings: `users` must hold integer indices, got dtype float32")):
        rec.predict_ratings(model, np.zeros(3, np.float32), np.arange(3))


# ------------------------------------------------------------------------------------------------
# Heavier checks (CI's slow step)


@pytest.mark.slow
def test_als_biases_on_biased_data():
    data = synthetic_ratings(1, *SHAPE, RANK, density=0.5, noise=NOISE, mean=3.5, bias_scale=0.5)
    m = rec.als(data.ratings, data.train_mask, RANK, iters=20, biases=True,
                key=jax.random.key(0))
    assert bool(m.converged)
    np.testing.assert_allclose(m.mean, data.ratings[data.train_mask].astype(float).mean(),
                               rtol=1e-5)
    assert float(rec.rmse(m, data.ratings, data.test_mask)) <= 1.1 * NOISE
    obj = np.asarray(m.objective, float)
    assert np.all(np.diff(obj) <= 1e-6 * obj[0])
    # without biases the same rank cannot absorb the offsets
    plain = rec.als(data.ratings, data.train_mask, RANK, iters=20, key=jax.random.key(0))
    assert float(rec.rmse(plain, data.ratings, data.test_mask)) > 2 * NOISE
    gd = rec.fit_gd(jax.random.key(0), data.ratings, data.train_mask, RANK, steps=500,
                    biases=True)
    assert float(gd.objective[-1]) <= 1.01 * float(m.objective[-1])


@pytest.mark.slow
def test_balancing_speeds_up_als(data):
    kw = {"iters": 20, "key": jax.random.key(0)}
    bal = rec.als(data.ratings, data.train_mask, RANK, **kw)
    plain = rec.als(data.ratings, data.train_mask, RANK, balance=False, **kw)
    assert float(bal.objective[-1]) < float(plain.objective[-1])
    assert float(bal.grad_norm) < 1e-4 < 1e-3 < float(plain.grad_norm)
    obj = np.asarray(plain.objective, float)
    assert np.all(np.diff(obj) <= 1e-6 * obj[0])
    longer = rec.als(data.ratings, data.train_mask, RANK, balance=False, iters=400,
                     key=jax.random.key(0))
    np.testing.assert_allclose(longer.objective[-1], bal.objective[-1], rtol=1e-4)


@pytest.mark.slow
def test_low_precision_inputs_keep_their_dtype():
    data = synthetic_ratings(0, 40, 30, 2, density=0.6, noise=NOISE)
    r16 = jnp.asarray(data.ratings, jnp.bfloat16)
    m = rec.als(r16, data.train_mask, 2, iters=10, key=jax.random.key(0))
    assert m.user_factors.dtype == jnp.bfloat16 and m.objective.dtype == jnp.bfloat16
    assert bool(m.ok)
    ref = rec.als(r16.astype(jnp.float32), data.train_mask, 2, iters=10, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(m.user_factors, np.float32),
                               np.asarray(ref.user_factors.astype(jnp.bfloat16), np.float32),
                               rtol=2e-2, atol=2e-2)


@pytest.mark.slow
def test_checkify_reports_singular_systems():
    r, w = _small_problem(1, sparse_user=True)

    def fit(reg):
        return rec.als(r, w, 2, reg=reg, iters=2, key=jax.random.key(0))

    err, out = checkify.checkify(jax.jit(fit))(jnp.float64(0.0))
    assert not bool(out.ok)
    with pytest.raises(checkify.JaxRuntimeError, match="normal equation"):
        err.throw()
    err, out = checkify.checkify(jax.jit(fit))(jnp.float64(0.1))
    assert bool(out.ok) and err.get() is None


@pytest.mark.slow
def test_train_fit_drives_mf_objective(data, model):
    from jaxla import train

    w = data.train_mask
    key_u, key_v = jax.random.split(jax.random.key(0))
    params = {"user_factors": 0.5 * jax.random.normal(key_u, (SHAPE[0], RANK), jnp.float32),
              "item_factors": 0.5 * jax.random.normal(key_v, (SHAPE[1], RANK), jnp.float32)}
    n_obs = float(w.sum())

    def loss(p, batch):  # the whole matrix is one example: full-batch training
        r, mask = batch
        return rec.mf_objective(p, r[0], mask[0], reg=0.1) / n_obs

    params, history = train.fit(loss, params, (data.ratings[None], w[None]),
                                optax.adam(0.05), steps=500, progress=False)
    j = float(rec.mf_objective(params, data.ratings, w, reg=0.1))
    assert j <= 1.01 * float(model.objective[-1])
    assert history["loss"][-1] < history["loss"][0]
