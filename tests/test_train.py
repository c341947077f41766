"""Tests of jaxla.train against hand-written optax loops, numpy formulas and scikit-learn.

Most fits share one problem (tests/train_scripts/problem.py) and one optimizer object, so their
compiled chunks are reused across tests. Bitwise checks (resume == uninterrupted) compare runs
on this machine, on CPU, with the same seed.
"""

from __future__ import annotations

import functools
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads
from sklearn.linear_model import ElasticNet, Ridge

import jaxla.train as train
from tests.helpers import msg
from tests.train_scripts import problem

ROOT = Path(__file__).resolve().parents[1]
OPT = problem.OPTIMIZER
LOSS = problem.loss


def jmsg(text):
    """Like ``msg`` for errors raised while tracing a jitted function (JAX adds a note)."""
    return "^" + re.escape(text) + r"(\n|$)"


def _np(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a), tree)


def _assert_trees(a, b, *, exact=False, rtol=1e-5, atol=1e-6):
    la, ta = jax.tree_util.tree_flatten(_np(a))
    lb, tb = jax.tree_util.tree_flatten(_np(b))
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _copy(tree):
    return jax.tree_util.tree_map(jnp.array, tree)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _hand_step(loss_fn, optimizer, params, state, batch, key=None):
    """One optax update written out by hand."""
    args = (batch,) if key is None else (batch, key)
    loss, grads = jax.value_and_grad(loss_fn)(params, *args)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss, grads


def _global_norm_np(tree):
    return float(np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2)
                             for g in jax.tree_util.tree_leaves(tree))))


_LOOP_STEP = train.make_step(LOSS, OPT, donate=False)


def _loop(steps, *, batches=None, keys=None, step=_LOOP_STEP, params=None):
    """A Python loop of make_step: final params, opt state and the metrics of every step."""
    params = problem.init_params() if params is None else params
    state = OPT.init(params)
    full = problem.data()
    out = []
    for t in range(1, steps + 1):
        batch = full if batches is None else batches(t)
        key = None if keys is None else keys(t)
        params, state, m = step(params, state, batch, key)
        out.append({k: float(v) for k, v in m.items()})
    return params, state, out


# ---------------------------------------------------------------------------------------------
# make_step


def test_make_step_matches_hand_written_optax_update():
    params = problem.init_params()
    state = OPT.init(params)
    ref_p, ref_s = params, state
    step = train.make_step(LOSS, OPT, donate=False)
    for _ in range(3):
        params, state, metrics = step(params, state, problem.data())
        ref_p, ref_s, ref_loss, ref_grads = _hand_step(LOSS, OPT, ref_p, ref_s, problem.data())
        assert set(metrics) == {"loss", "grad_norm"}
        assert all(np.shape(v) == () for v in metrics.values())
        np.testing.assert_allclose(float(metrics["loss"]), float(ref_loss), rtol=1e-6)
        np.testing.assert_allclose(float(metrics["grad_norm"]), _global_norm_np(ref_grads),
                                   rtol=1e-5)
    _assert_trees(params, ref_p, rtol=1e-5, atol=1e-6)
    _assert_trees(state, ref_s, rtol=1e-5, atol=1e-6)
    assert params["layers_0"]["w"].dtype == jnp.float32  # float32 kept with float64 enabled


def test_make_step_donates_params_and_state_only_when_asked():
    def loss(params, batch):
        return jnp.sum((params["w"] - batch) ** 2)

    params = {"w": jnp.ones(3)}
    state = OPT.init(params)
    kept = train.make_step(loss, OPT, donate=False)
    kept(params, state, jnp.zeros(3))
    assert not params["w"].is_deleted()
    donated = train.make_step(loss, OPT)
    new_params, _, _ = donated(params, state, jnp.zeros(3))
    assert params["w"].is_deleted() and state[0].mu["w"].is_deleted()
    assert np.all(np.isfinite(np.asarray(new_params["w"])))


def test_make_step_with_aux_and_key_matches_hand_update():
    def loss_aux(params, batch, key):
        x, y = batch
        z = problem.logits(params, x, key)
        loss = optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(z, axis=1) == y)}

    key = jax.random.key(7)
    params = problem.init_params()
    step = train.make_step(loss_aux, OPT, has_aux=True, donate=False)
    new_params, _, metrics = step(params, OPT.init(params), problem.data(), key)
    (ref_loss, aux), grads = jax.jit(jax.value_and_grad(loss_aux, has_aux=True))(
        params, problem.data(), key)
    updates, _ = jax.jit(OPT.update)(grads, OPT.init(params), params)
    _assert_trees(new_params, optax.apply_updates(params, updates))
    assert set(metrics) == {"loss", "grad_norm", "accuracy"}
    np.testing.assert_allclose(float(metrics["loss"]), float(ref_loss), rtol=1e-6)
    assert float(metrics["accuracy"]) == float(aux["accuracy"])
    # a different key gives a different dropout mask, hence a different loss
    _, _, other = step(params, OPT.init(params), problem.data(), jax.random.key(8))
    assert float(other["loss"]) != float(metrics["loss"])


def test_make_step_vmaps_over_a_stack_of_models():
    def loss(params, batch):
        x, y = batch
        return jnp.mean((x @ params["w"] - y) ** 2)

    opt = optax.sgd(0.1)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((10, 3)))
    y = x @ jnp.array([1.0, 2.0, 3.0])
    ws = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3)))
    step = train.make_step(loss, opt, donate=False)
    out, _, metrics = jax.vmap(step, in_axes=(0, 0, None))(
        {"w": ws}, jax.vmap(opt.init)({"w": ws}), (x, y))
    for i in range(4):
        ref, _, ref_m = step({"w": ws[i]}, opt.init({"w": ws[i]}), (x, y))
        np.testing.assert_allclose(out["w"][i], ref["w"], rtol=1e-12)
        np.testing.assert_allclose(metrics["loss"][i], ref_m["loss"], rtol=1e-12)


def test_step_errors_name_the_loss_and_what_it_returned():
    params = {"w": jnp.ones(3)}
    state = optax.sgd(0.1).init(params)
    vector = train.make_step(lambda p, b: p["w"] * 2.0, optax.sgd(0.1))
    with pytest.raises(ValueError, match=jmsg(
            "jaxla.train.make_step: `loss_fn` must return a scalar loss, got shape (3,)")):
        vector(params, state, None)
    with pytest.raises(ValueError, match=jmsg(
            "jaxla.train.make_sam_step: `loss_fn` must return a scalar loss, got shape (3,)")):
        train.make_sam_step(lambda p, b: p["w"], optax.sgd(0.1))(params, state, None)
    # under an outer jit too
    with pytest.raises(ValueError, match="must return a scalar loss, got shape"):
        jax.jit(train.make_step(lambda p, b: p["w"], optax.sgd(0.1), donate=False))(
            params, state, None)
    with pytest.raises(ValueError, match=jmsg(
            "jaxla.train.make_step: `loss_fn` must return (loss, aux) with has_aux=True, got a "
            "single array of shape ()")):
        train.make_step(lambda p, b: jnp.sum(p["w"]), optax.sgd(0.1), has_aux=True,
                        donate=False)(params, state, None)
    with pytest.raises(ValueError, match=jmsg(
            "jaxla.train.make_step: `loss_fn` must return a scalar loss (pass has_aux=True to "
            "return (loss, aux)), got a tuple of length 2")):
        train.make_step(lambda p, b: (jnp.sum(p["w"]), {}), optax.sgd(0.1),
                        donate=False)(params, state, None)
    with pytest.raises(ValueError, match=jmsg(
            "jaxla.train.make_step: `loss_fn` aux['acc'] must be a scalar, got shape (3,)")):
        train.make_step(lambda p, b: (jnp.sum(p["w"]), {"acc": p["w"]}), optax.sgd(0.1),
                        has_aux=True, donate=False)(params, state, None)
    with pytest.raises(ValueError, match="aux names must differ from loss, grad_norm"):
        train.make_step(lambda p, b: (jnp.sum(p["w"]), {"loss": 1.0}), optax.sgd(0.1),
                        has_aux=True, donate=False)(params, state, None)
    with pytest.raises(TypeError, match=jmsg(
            "jaxla.train.make_step: `optimizer` must be an optax.GradientTransformation (with "
            "init and update), got function")):
        train.make_step(lambda p, b: 0.0, optax.sgd)
    with pytest.raises(TypeError, match=jmsg(
            "jaxla.train.make_step: `loss_fn` must be callable, got 3")):
        train.make_step(3, optax.sgd(0.1))
    with pytest.raises(ValueError, match=jmsg(
            "jaxla.train.make_sam_step: `rho` must be >= 0 and finite, got -0.1")):
        train.make_sam_step(lambda p, b: 0.0, optax.sgd(0.1), rho=-0.1)


# ---------------------------------------------------------------------------------------------
# SAM


def _sam_problem():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((20, 3)))
    y = jnp.asarray((rng.standard_normal(20) > 0).astype(np.float64))
    params = {"w": jnp.asarray(rng.standard_normal(3)), "b": jnp.asarray(0.3)}

    def loss(params, batch):
        xb, yb = batch
        z = xb @ params["w"] + params["b"]
        return jnp.mean(optax.sigmoid_binary_cross_entropy(z, yb))

    return loss, params, (x, y)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_equals_two_gradient_reference(adaptive):
    loss, params, batch = _sam_problem()
    grad, value = jax.jit(jax.grad(loss)), jax.jit(loss)
    rho = 0.2
    opt = optax.sgd(0.3, momentum=0.9)
    step = train.make_sam_step(loss, opt, rho=rho, adaptive=adaptive, donate=False)
    p, s = params, opt.init(params)
    ref_p, ref_s = params, opt.init(params)
    for _ in range(2):
        p, s, metrics = step(p, s, batch)
        # reference: numpy arithmetic for e, jax.grad for the two gradients, optax by hand
        g = grad(ref_p, batch)
        w_np = {k: np.asarray(v) for k, v in ref_p.items()}
        g_np = {k: np.asarray(v) for k, v in g.items()}
        if adaptive:
            denom = np.sqrt(sum(np.sum((np.abs(w_np[k]) * g_np[k]) ** 2) for k in w_np))
            e = {k: rho * w_np[k] ** 2 * g_np[k] / denom for k in w_np}
        else:
            denom = np.sqrt(sum(np.sum(g_np[k] ** 2) for k in w_np))
            e = {k: rho * g_np[k] / denom for k in w_np}
        adv = {k: jnp.asarray(w_np[k] + e[k]) for k in w_np}
        g_sam = grad(adv, batch)
        updates, new_s = opt.update(g_sam, ref_s, ref_p)
        np.testing.assert_allclose(float(metrics["loss"]), float(value(ref_p, batch)), rtol=1e-12)
        np.testing.assert_allclose(float(metrics["sam_loss"]), float(value(adv, batch)),
                                   rtol=1e-12)
        np.testing.assert_allclose(float(metrics["grad_norm"]), _global_norm_np(g), rtol=1e-12)
        np.testing.assert_allclose(float(metrics["sam_grad_norm"]), _global_norm_np(g_sam),
                                   rtol=1e-12)
        ref_p, ref_s = optax.apply_updates(ref_p, updates), new_s
        _assert_trees(p, ref_p, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_zero_gradient_gives_no_nan(adaptive):
    opt = optax.sgd(0.1)
    flat = train.make_sam_step(lambda p, b: jnp.sum(p["w"] * 0.0) + 1.0, opt, adaptive=adaptive)
    params = {"w": jnp.ones(3, jnp.float32)}
    new, _, metrics = flat(params, opt.init(params), None)
    np.testing.assert_array_equal(new["w"], np.ones(3, np.float32))
    assert np.isfinite(float(metrics["sam_loss"])) and float(metrics["grad_norm"]) == 0.0
    # |w| g = 0 with g != 0 (adaptive: w = 0)
    lin = train.make_sam_step(lambda p, b: jnp.sum(p["w"]), opt, adaptive=adaptive)
    zero = {"w": jnp.zeros(3, jnp.float32)}
    new, _, metrics = lin(zero, opt.init(zero), None)
    assert np.all(np.isfinite(np.asarray(new["w"])))
    assert new["w"].dtype == jnp.float32


def test_fit_with_sam_equals_loop_of_sam_steps():
    sam_step = train.make_sam_step(LOSS, OPT, rho=0.1, donate=False)
    ref_p, _, ref_m = _loop(4, step=sam_step)
    params, history = train.fit(LOSS, problem.init_params(), problem.data(), OPT, steps=4,
                                sam_rho=0.1, log_every=2, progress=False)
    _assert_trees(params, ref_p)
    np.testing.assert_allclose(history["sam_loss"], [ref_m[1]["sam_loss"], ref_m[3]["sam_loss"]],
                               rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# fit: agreement with hand loops


def test_fit_full_batch_equals_loop_of_make_step():
    ref_p, _, ref_m = _loop(13)
    init = problem.init_params()
    params, history = train.fit(LOSS, init, problem.data(), OPT, steps=13, log_every=5,
                                progress=False)
    assert not init["layers_0"]["w"].is_deleted()  # fit works on a copy
    _assert_trees(params, ref_p)
    assert history["step"].tolist() == [5, 10, 13]
    assert history["step"].dtype == np.int64 and history["loss"].dtype == np.float64
    for name in ("loss", "grad_norm"):
        np.testing.assert_allclose(history[name], [ref_m[i][name] for i in (4, 9, 12)],
                                   rtol=1e-5)
    assert set(history) == {"step", "loss", "grad_norm"}
    # epochs with full batches: one step per epoch
    by_epochs, _ = train.fit(LOSS, init, problem.data(), OPT, epochs=13, log_every=5,
                             progress=False)
    _assert_trees(by_epochs, params, exact=True)


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_minibatch_equals_hand_loop_with_same_permutations(shuffle):
    key = jax.random.key(11)
    bs, per_epoch = 10, problem.N // 10  # 4 steps per epoch, 8 examples dropped
    shuffle_key, step_key = jax.random.split(key)
    x, y = problem.data()
    orders = [np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, e), problem.N))
              if shuffle else np.arange(problem.N) for e in range(3)]
    x_np, y_np = np.asarray(x), np.asarray(y)

    def batches(t):
        e, j = divmod(t - 1, per_epoch)
        idx = orders[e][j * bs:(j + 1) * bs]
        return x_np[idx], y_np[idx]

    steps = 3 * per_epoch
    ref_p, _, ref_m = _loop(steps, batches=batches,
                            keys=lambda t: jax.random.fold_in(step_key, t))
    params, history = train.fit(LOSS, problem.init_params(), (x, y), OPT, epochs=3,
                                batch_size=bs, shuffle=shuffle, key=key, log_every=4,
                                progress=False)
    _assert_trees(params, ref_p)
    assert history["step"].tolist() == [4, 8, 12]
    np.testing.assert_allclose(history["loss"], [ref_m[i]["loss"] for i in (3, 7, 11)],
                               rtol=1e-5)


def test_fit_eval_and_callbacks_are_logged_with_their_own_steps():
    ref = {}
    p, s = problem.init_params(), OPT.init(problem.init_params())
    for t in range(1, 16):
        p, s, _ = _LOOP_STEP(p, s, problem.data())
        ref[t] = p
    x_eval, y_eval = problem.data()

    def eval_fn(params):
        return {"eval_loss": LOSS(params, (x_eval[:20], y_eval[:20]))}

    seen = []

    def cb(info):
        seen.append(info)
        assert info.history["step"][-1] == info.step
        _assert_trees(info.params, ref[info.step])
        out = {"norm_w": float(jnp.sum(info.params["layers_1"]["w"] ** 2))}
        if info.step == 10:
            out["only_at_10"] = 1.0
        return out

    params, history = train.fit(LOSS, problem.init_params(), problem.data(), OPT, steps=15,
                                log_every=5, eval_fn=eval_fn, eval_every=10,
                                callbacks=[cb, lambda info: None], progress=False)
    assert history["step"].tolist() == [5, 10, 15]
    assert history["eval_step"].tolist() == [10, 15]
    np.testing.assert_allclose(history["eval_loss"],
                               [float(eval_fn(ref[10])["eval_loss"]),
                                float(eval_fn(ref[15])["eval_loss"])], rtol=1e-5)
    assert history["callback_step"].tolist() == [5, 10, 15]
    np.testing.assert_array_equal(history["only_at_10"], [np.nan, 1.0, np.nan])
    np.testing.assert_allclose(
        history["norm_w"], [float(jnp.sum(ref[t]["layers_1"]["w"] ** 2)) for t in (5, 10, 15)],
        rtol=1e-5)
    assert [i.step for i in seen] == [5, 10, 15]
    assert "eval_loss" in seen[1].metrics and "eval_loss" not in seen[0].metrics
    assert list(seen[0].metrics)[:2] == ["loss", "grad_norm"]
    _assert_trees(params, ref[15])


def test_callback_stop_ends_training_and_resume_keeps_it_stopped(tmp_path):
    def stop_at_10(info):
        return {"stop": info.step >= 10}

    kw = {"steps": 20, "log_every": 5, "progress": False, "checkpoint_dir": tmp_path}
    params, history = train.fit(LOSS, problem.init_params(), problem.data(), OPT,
                                callbacks=[stop_at_10], **kw)
    ref_p, _, _ = _loop(10)
    _assert_trees(params, ref_p)
    assert history["step"].tolist() == [5, 10] and "stop" not in history
    again, history2 = train.fit(LOSS, problem.init_params(), problem.data(), OPT, **kw)
    _assert_trees(again, params, exact=True)
    assert history2["step"].tolist() == [5, 10]


# ---------------------------------------------------------------------------------------------
# fit: failures, interrupts, resume


N_BAD = 11
COUNTER_OPT = optax.sgd(0.5)


def _counter_loss(params, batch):
    """A regression loss whose `c` grows by exactly 1 per step; NaN from step N_BAD on."""
    x, y = batch
    base = jnp.mean((x @ params["w"] - y) ** 2)
    c = params["c"]
    return base - 2.0 * c + jnp.where(c > N_BAD - 1.5, jnp.nan, 0.0)


def _counter_problem():
    rng = np.random.default_rng(2)
    x = (0.3 * rng.standard_normal((16, 2))).astype(np.float32)
    y = x @ np.array([1.0, -1.0], np.float32)
    return {"w": jnp.zeros(2, jnp.float32), "c": jnp.zeros((), jnp.float32)}, (x, y)


@pytest.mark.parametrize("batch_size, checkpoint", [(None, True), (4, True), (None, False)])
def test_nan_loss_stops_at_its_step_and_keeps_last_good_checkpoint(tmp_path, batch_size,
                                                                   checkpoint):
    params, data = _counter_problem()
    with pytest.raises(FloatingPointError) as info:
        train.fit(_counter_loss, params, data, COUNTER_OPT, steps=30, log_every=4,
                  batch_size=batch_size, shuffle=False, progress=False,
                  checkpoint_dir=tmp_path if checkpoint else None)
    path = str(tmp_path / "checkpoint.npz")
    text = str(info.value)
    assert text.startswith(f"jaxla.train.fit: loss is not finite at step {N_BAD} (loss nan, ")
    where = f"the last good checkpoint is {path!r} (step 8)" if checkpoint else \
        "no checkpoint was written"
    assert text.endswith(f"; {where}; err.params holds the parameters after step {N_BAD - 1}")
    err = info.value
    assert err.step == N_BAD - 1 and float(err.params["c"]) == N_BAD - 1
    assert err.history["step"].tolist() == [4, 8]
    # the attached state is the state after N_BAD - 1 steps of a plain loop
    step = train.make_step(_counter_loss, COUNTER_OPT, donate=False)
    p, s = params, COUNTER_OPT.init(params)
    x, y = (jnp.asarray(a) for a in data)
    for t in range(1, N_BAD):
        batch = (x, y) if batch_size is None else \
            tuple(a[(t - 1) % 4 * 4:((t - 1) % 4 + 1) * 4] for a in (x, y))
        p, s, _ = step(p, s, batch)
        if t == 8:
            at_8 = p
    _assert_trees(err.params, p)
    if not checkpoint:  # chunks ran one ahead of their read-back: still frozen at N_BAD - 1
        assert os.listdir(tmp_path) == []
        return
    ckpt = train.load_checkpoint(path, params, COUNTER_OPT.init(params))
    assert ckpt.step == 8 and float(ckpt.params["c"]) == 8.0
    _assert_trees(ckpt.params, at_8)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz"]


def test_non_finite_gradient_is_reported_as_such():
    def loss(params, batch):
        return jnp.sum(jnp.sqrt(jnp.abs(params["w"])))  # finite value, infinite slope at 0

    with pytest.raises(FloatingPointError, match=re.escape(
            "jaxla.train.fit: gradient is not finite at step 1 (loss 0, grad_norm ")) as info:
        train.fit(loss, {"w": jnp.zeros(2)}, jnp.zeros((3, 1)), optax.sgd(0.1), steps=3,
                  progress=False)
    assert "no checkpoint was written" in str(info.value) and info.value.step == 0


@pytest.mark.parametrize("mode", ["full", "minibatch"])
def test_keyboard_interrupt_from_callback_checkpoints_and_resumes_bitwise(tmp_path, mode):
    kw = {"steps": 20, "log_every": 5, "progress": False}
    if mode == "minibatch":
        kw = {"steps": 20, "log_every": 4, "batch_size": 10, "key": jax.random.key(3),
              "progress": False}
    straight, straight_hist = train.fit(LOSS, problem.init_params(), problem.data(), OPT, **kw)
    stop_at = 2 * kw["log_every"]

    def interrupt(info):
        if info.step == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        train.fit(LOSS, problem.init_params(), problem.data(), OPT, callbacks=[interrupt],
                  checkpoint_dir=tmp_path, checkpoint_every=3 * kw["log_every"], **kw)
    assert info.value.step == stop_at
    path = tmp_path / "checkpoint.npz"
    params = problem.init_params()
    assert train.load_checkpoint(path, params, OPT.init(params)).step == stop_at
    resumed, hist = train.fit(LOSS, problem.init_params(), problem.data(), OPT,
                              checkpoint_dir=tmp_path, checkpoint_every=3 * kw["log_every"], **kw)
    _assert_trees(resumed, straight, exact=True)
    for name in straight_hist:
        np.testing.assert_array_equal(hist[name], straight_hist[name])


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test (pytest-xdist workers ignore SIGINT)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.fail("signals can only be handled in the main thread")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_is_deferred_to_the_chunk_end_and_checkpointed(tmp_path, default_sigint):

    def ctrl_c(info):
        if info.step == 10:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the deferred handler only records the request
        return {"after_signal": float(info.step)}

    with pytest.raises(KeyboardInterrupt) as info:
        train.fit(LOSS, problem.init_params(), problem.data(), OPT, steps=20, log_every=5,
                  callbacks=[ctrl_c], checkpoint_dir=tmp_path, checkpoint_every=15,
                  progress=False)
    assert info.value.step == 10 and info.value.history["after_signal"].tolist() == [5.0, 10.0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    params = problem.init_params()
    ckpt = train.load_checkpoint(tmp_path / "checkpoint.npz", params, OPT.init(params))
    assert ckpt.step == 10 and ckpt.history["callback_step"].tolist() == [5, 10]


def _wait_for(proc, paths, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"training subprocess exited with {proc.returncode}:\n{err[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("training subprocess did not reach its checkpoint in time")
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["full", pytest.param("minibatch", marks=pytest.mark.slow)])
def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, mode):
    ckpt_dir, marker = tmp_path / "ckpt", tmp_path / "hanging"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.train_scripts.fit_until_killed", mode, str(ckpt_dir),
         str(marker)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(proc, [ckpt_dir / "checkpoint.npz", marker])
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    params = problem.init_params()
    kw = problem.kill_run_kwargs(mode)
    killed_at = train.load_checkpoint(ckpt_dir / "checkpoint.npz", params, OPT.init(params))
    assert 0 < killed_at.step < kw["steps"]
    assert killed_at.step == problem.HANG_AT - kw["log_every"]
    straight, straight_hist = train.fit(LOSS, problem.init_params(), problem.data(), OPT,
                                        progress=False, **kw)
    resumed, hist = train.fit(LOSS, problem.init_params(), problem.data(), OPT,
                              checkpoint_dir=ckpt_dir, progress=False, **kw)
    _assert_trees(resumed, straight, exact=True)
    np.testing.assert_array_equal(hist["loss"], straight_hist["loss"])
    assert sorted(os.listdir(ckpt_dir)) == ["checkpoint.npz"]


def test_resume_checks_key_and_batching(tmp_path):
    kw = {"steps": 8, "log_every": 4, "progress": False, "checkpoint_dir": tmp_path}
    key = jax.random.key(0)
    train.fit(LOSS, problem.init_params(), problem.data(), OPT, batch_size=10, key=key, **kw)
    path = str(tmp_path / "checkpoint.npz")
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.fit: `key` must be the key of the run that wrote the checkpoint "
            f"{path!r} (pass the same key, or resume=False to start afresh), got a different "
            f"key")):
        train.fit(LOSS, problem.init_params(), problem.data(), OPT, batch_size=10,
                  key=jax.random.key(1), **kw)
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.fit: `batch_size` must be 10 as in the run that wrote the checkpoint "
            f"{path!r} (or pass resume=False), got 16")):
        train.fit(LOSS, problem.init_params(), problem.data(), OPT, batch_size=16, key=key,
                  **kw)
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.fit: the checkpoint {path!r} is at step 8, beyond the 4 steps asked "
            f"for; ask for more steps or pass resume=False")):
        train.fit(LOSS, problem.init_params(), problem.data(), OPT, batch_size=10, key=key,
                  **{**kw, "steps": 4})
    # resume=False starts afresh and overwrites the file
    _, hist = train.fit(LOSS, problem.init_params(), problem.data(), OPT, batch_size=10,
                        key=jax.random.key(1), resume=False, **kw)
    assert hist["step"].tolist() == [4, 8]


# ---------------------------------------------------------------------------------------------
# fit: progress and argument errors


def test_progress_lines_when_not_a_terminal_and_silence_when_off(capsys):
    train.fit(LOSS, problem.init_params(), problem.data(), OPT, steps=10, log_every=5)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert re.fullmatch(r"step 5/10 loss [0-9.e+-]+ grad_norm [0-9.e+-]+ \([0-9.]+s\)", err[0])
    assert err[1].startswith("step 10/10 loss ")
    train.fit(LOSS, problem.init_params(), problem.data(), OPT, steps=10, log_every=5,
              progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    train.fit(LOSS, problem.init_params(), problem.data(), OPT, steps=10, log_every=5)
    text = term.getvalue()
    assert "10/10" in text and "loss" in text and "step 5/10" not in text


def test_default_log_every_is_a_twentieth_of_the_run():
    _, history = train.fit(LOSS, problem.init_params(), problem.data(), OPT, steps=100,
                           progress=False)
    assert history["step"].tolist() == list(range(5, 101, 5))


def test_fit_argument_errors():
    p, d = problem.init_params(), problem.data()

    def fit(**kw):
        return train.fit(LOSS, p, d, OPT, progress=False, **kw)

    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: exactly one of `steps` and `epochs` must be given, got steps=3 "
            "and epochs=2")):
        fit(steps=3, epochs=2)
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: exactly one of `steps` and `epochs` must be given, got "
            "steps=None and epochs=None")):
        fit()
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `batch_size`=100 exceeds the number of examples n=48")):
        fit(steps=3, batch_size=100, shuffle=False)
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `key` must be given to shuffle minibatches (or pass "
            "shuffle=False), got None")):
        fit(steps=3, batch_size=8)
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `data` leaves must share the leading example axis (48 examples "
            "at '0'), got 47 at '1'")):
        train.fit(LOSS, p, (d[0], d[1][:47]), OPT, steps=3)
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `eval_every` needs `eval_fn`, got eval_every=2 and eval_fn=None")):
        fit(steps=3, eval_every=2)
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `checkpoint_every` needs `checkpoint_dir`, got checkpoint_every=2 "
            "and checkpoint_dir=None")):
        fit(steps=3, checkpoint_every=2)
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `sam_adaptive` needs `sam_rho` (the SAM radius), got "
            "sam_rho=None")):
        fit(steps=3, sam_adaptive=True)
    with pytest.raises(TypeError, match=msg(
            "jaxla.train.fit: `loss_fn` must take a third argument, the step key, when `key` "
            "is given (add a `key=None` parameter), got a function of fewer arguments")):
        train.fit(_counter_loss, *_counter_problem(), COUNTER_OPT, steps=3,
                  key=jax.random.key(0))
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `params` contains 1 NaN or Inf value(s); clean or mask them "
            "first")):
        train.fit(_counter_loss, {"w": jnp.array([jnp.nan, 0.0]), "c": jnp.zeros(())},
                  _counter_problem()[1], COUNTER_OPT, steps=3)
    with pytest.raises(TypeError, match=msg(
            "jaxla.train.fit: `steps` must be an int, got 2.5 (float)")):
        fit(steps=2.5)
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.train.fit: `eval_fn` must return metric names distinct from the other "
            "history columns (grad_norm, loss), got 'loss'")):
        fit(steps=5, eval_fn=lambda params: {"loss": 0.0})
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.fit: `callbacks[0]` must return scalar metrics, got 'v' of shape (2,)")):
        fit(steps=5, callbacks=[lambda info: {"v": np.zeros(2)}])


# ---------------------------------------------------------------------------------------------
# Checkpoint files


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    params = {
        "dense": {"w": jnp.asarray(np.random.default_rng(0).standard_normal((3, 2)),
                                   jnp.float32)},
        "half": jnp.asarray([1.5, -2.25, 3.0e-3], jnp.bfloat16),
        "double": jnp.asarray([np.pi, np.e]),
        "count": jnp.asarray(3, jnp.int32),
    }
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    state = opt.init(params_f := {k: v for k, v in params.items() if k != "count"})
    state = jax.jit(opt.update)(jax.tree_util.tree_map(jnp.ones_like, params_f), state,
                                params_f)[1]
    history = {"step": np.array([1, 2], np.int64), "loss": np.array([0.5, np.nan]),
               "x": np.array([np.inf, -np.inf])}
    path = tmp_path / "sub" / "state.npz"
    assert train.save_checkpoint(path, params, state, step=12, key=jax.random.key(42),
                                 history=history) == str(path)
    like_state = opt.init(params_f)
    ckpt = train.load_checkpoint(path, params, like_state)
    _assert_trees(ckpt.params, params, exact=True)
    _assert_trees(ckpt.opt_state, state, exact=True)
    assert ckpt.params["half"].dtype == jnp.bfloat16
    assert ckpt.step == 12
    np.testing.assert_array_equal(jax.random.key_data(ckpt.key),
                                  jax.random.key_data(jax.random.key(42)))
    assert set(ckpt.history) == set(history)
    for name, col in history.items():
        assert ckpt.history[name].dtype == col.dtype
        np.testing.assert_array_equal(ckpt.history[name], col)
    assert sorted(os.listdir(path.parent)) == ["state.npz"]
    # raw uint32 keys and no key at all
    train.save_checkpoint(path, params, (), step=0, key=jax.random.PRNGKey(5))
    raw = train.load_checkpoint(path, params, ()).key
    assert raw.dtype == jnp.uint32 and raw.tolist() == jax.random.PRNGKey(5).tolist()
    train.save_checkpoint(path, params, (), step=0)
    assert train.load_checkpoint(path, params, ()).key is None
    # the file is plain numpy: no pickle needed to read it
    with np.load(path, allow_pickle=False) as z:
        assert "metadata" in z.files and "params_0" in z.files


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    train.save_checkpoint(path, {"w": jnp.ones(2)}, (), step=1)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(path, {"w": jnp.zeros(2)}, (), step=2)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]
    ckpt = train.load_checkpoint(path, {"w": jnp.zeros(2)}, ())
    assert ckpt.step == 1 and ckpt.params["w"].tolist() == [1.0, 1.0]


def test_checkpoint_errors(tmp_path):
    path = tmp_path / "c.npz"
    params = {"a": jnp.ones((2, 3)), "b": jnp.ones(2)}
    train.save_checkpoint(path, params, (), step=0)
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.load_checkpoint: `params_like` leaf 'a' must have shape (2, 3) and "
            f"dtype float64 as in the checkpoint {str(path)!r}, got shape (3, 2) and dtype "
            f"float64")):
        train.load_checkpoint(path, {"a": jnp.ones((3, 2)), "b": jnp.ones(2)}, ())
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.load_checkpoint: `params_like` leaf 'a' must have shape (2, 3) and "
            f"dtype float64 as in the checkpoint {str(path)!r}, got shape (2, 3) and dtype "
            f"float32")):
        train.load_checkpoint(path, {"a": jnp.ones((2, 3), jnp.float32), "b": jnp.ones(2)}, ())
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.load_checkpoint: `params_like` must have the leaf paths of the "
            f"checkpoint {str(path)!r} (2 leaves), got 2 leaves, first differing at leaf 1: "
            f"checkpoint has 'b', `params_like` has 'c'")):
        train.load_checkpoint(path, {"a": jnp.ones((2, 3)), "c": jnp.ones(2)}, ())
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.load_checkpoint: `opt_state_like` must have the leaf paths of the "
            f"checkpoint {str(path)!r} (0 leaves), got 1 leaves, first differing at leaf 0: "
            f"checkpoint has no leaf, `opt_state_like` has '0'")):
        train.load_checkpoint(path, params, (jnp.ones(1),))
    missing = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match=msg(
            f"jaxla.train.load_checkpoint: `path` must name an existing checkpoint file, got "
            f"{missing!r}")):
        train.load_checkpoint(missing, params, ())
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.train.load_checkpoint: `path` must be a jaxla checkpoint (.npz with metadata)")):
        train.load_checkpoint(tmp_path / "junk.npz", params, ())
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.save_checkpoint: `step` must be >= 0, got -1")):
        train.save_checkpoint(path, params, (), step=-1)
    with pytest.raises(ValueError, match=msg(
            f"jaxla.train.save_checkpoint: `path` must name a file, got the directory "
            f"{str(tmp_path)!r}")):
        train.save_checkpoint(tmp_path, params, (), step=0)


# ---------------------------------------------------------------------------------------------
# Penalties and decay masks


def _penalty_params(dtype=np.float32):
    rng = np.random.default_rng(3)

    def arr(*shape):
        return jnp.asarray(rng.standard_normal(shape), dtype)

    return {"layers_0": {"w": arr(3, 4), "b": arr(4)}, "layers_1": {"w": arr(4, 2), "b": arr(2)},
            "norm": {"scale": arr(2)}}


def _np_leaves(params, names):
    return [np.asarray(params[a][b], np.float64) for a, b in names]


ALL = [("layers_0", "w"), ("layers_0", "b"), ("layers_1", "w"), ("layers_1", "b"),
       ("norm", "scale")]


@pytest.mark.parametrize(
    "include, exclude, names",
    [
        (None, None, ALL),
        (None, "*/b", [("layers_0", "w"), ("layers_1", "w"), ("norm", "scale")]),
        (re.compile(r"layers_\d/w"), None, [("layers_0", "w"), ("layers_1", "w")]),
        ("layers_*", ["*/b"], [("layers_0", "w"), ("layers_1", "w")]),
    ],
)
def test_penalties_equal_numpy_formulas_with_filters(include, exclude, names):
    params = _penalty_params()
    leaves = _np_leaves(params, names)
    sq = sum(np.sum(v ** 2) for v in leaves)
    ab = sum(np.sum(np.abs(v)) for v in leaves)
    l2 = train.l2(params, include=include, exclude=exclude)
    assert l2.dtype == jnp.float32 and l2.shape == ()
    np.testing.assert_allclose(float(l2), sq, rtol=1e-6)
    np.testing.assert_allclose(float(train.l1(params, include=include, exclude=exclude)), ab,
                               rtol=1e-6)
    for r in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(
            float(train.elastic_net(params, l1_ratio=r, include=include, exclude=exclude)),
            r * ab + (1 - r) / 2 * sq, rtol=1e-6)
    jitted = jax.jit(lambda p: train.l2(p, include=include, exclude=exclude))
    np.testing.assert_allclose(float(jitted(params)), sq, rtol=1e-6)


def test_penalty_gradients_dtypes_and_errors():
    params = _penalty_params(np.float64)
    grads = jax.grad(lambda p: train.l2(p, exclude="*/b"))(params)
    np.testing.assert_allclose(grads["layers_0"]["w"], 2 * params["layers_0"]["w"])
    np.testing.assert_array_equal(grads["layers_0"]["b"], 0.0)
    check_grads(jax.jit(lambda p: train.elastic_net(p, l1_ratio=0.4, include="layers_0/*")),
                (params,), order=1, modes=["fwd", "rev"])
    half = {"w": jnp.full((300,), 20.0, jnp.float16)}  # 300 * 400 overflows float16
    assert train.l2(half).dtype == jnp.float32 and float(train.l2(half)) == 120_000.0
    assert train.l2({}).shape == ()
    batched = jax.vmap(lambda w: train.l1({"w": w}))(jnp.ones((5, 3)))
    np.testing.assert_array_equal(batched, np.full(5, 3.0))
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.train.l2: `include` pattern '*/x' must match at least one leaf path, got no "
            "match; nearest paths:")):
        train.l2(params, include="*/x")
    with pytest.raises(ValueError, match=msg(
            "jaxla.train.elastic_net: `l1_ratio` must be in [0, 1], got 1.5")):
        train.elastic_net(params, l1_ratio=1.5)
    with pytest.raises(TypeError, match=re.escape(
            "jaxla.train.l1: `params['n']` must have a real floating dtype, got integer")):
        train.l1({"n": jnp.arange(3)})


def test_l2_and_elastic_net_follow_scikit_learn_conventions():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 5))
    y = x @ rng.standard_normal(5) + 0.1 * rng.standard_normal(40)
    alpha = 0.7
    coef = Ridge(alpha=alpha, fit_intercept=False).fit(x, y).coef_

    def ridge(w):
        return jnp.sum((y - x @ w) ** 2) + alpha * train.l2({"w": w})

    grad = np.asarray(jax.grad(ridge)(jnp.asarray(coef)))
    assert np.max(np.abs(grad)) < 1e-8 * np.max(np.abs(x.T @ y))
    alpha, r = 0.05, 0.6
    coef = ElasticNet(alpha=alpha, l1_ratio=r, fit_intercept=False, tol=1e-12,
                      max_iter=100_000).fit(x, y).coef_
    assert np.all(coef != 0)

    def enet(w):
        return jnp.sum((y - x @ w) ** 2) / (2 * len(y)) + alpha * train.elastic_net(
            {"w": w}, l1_ratio=r)

    grad = np.asarray(jax.grad(enet)(jnp.asarray(coef)))
    assert np.max(np.abs(grad)) < 1e-8


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(0, 3))
def test_l2_splits_over_include_and_exclude(sizes, which):
    rng = np.random.default_rng(sum(sizes) + which)
    params = {f"p{i}": {"w": jnp.asarray(rng.standard_normal(s))} for i, s in enumerate(sizes)}
    pattern = f"p{which % len(sizes)}/*"
    total = float(train.l2(params))
    np.testing.assert_allclose(
        float(train.l2(params, include=pattern)) + float(train.l2(params, exclude=pattern)),
        total, rtol=1e-12)
    np.testing.assert_allclose(float(train.l1(params)),
                               sum(np.abs(np.asarray(v["w"])).sum() for v in params.values()),
                               rtol=1e-12)


def test_decay_mask_selects_weights_and_drives_adamw():
    params = {
        "layers_0": {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.ones(3, jnp.float32)},
        "norm": {"scale": jnp.ones(3, jnp.float32), "bias": jnp.ones(3, jnp.float32)},
        "embed": {"table": jnp.ones((4, 3), jnp.float32)},
        "b": jnp.ones(1, jnp.float32),
    }
    mask = train.decay_mask(params)
    assert mask == {"layers_0": {"w": True, "b": False}, "norm": {"scale": False, "bias": False},
                    "embed": {"table": True}, "b": False}
    assert train.decay_mask(params, include="layers_*") == {
        "layers_0": {"w": True, "b": False}, "norm": {"scale": False, "bias": False},
        "embed": {"table": False}, "b": False}
    assert train.decay_mask(params, exclude=None)["norm"]["scale"] is True
    assert train.decay_mask({"w": jnp.ones(2)}) == {"w": True}  # defaults may match nothing
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.train.decay_mask: `exclude` pattern '*/bais' must match at least one leaf "
            "path")):
        train.decay_mask(params, exclude=["*/bais"])
    lr, wd = 0.1, 0.5
    opt = optax.adamw(lr, weight_decay=wd, mask=train.decay_mask)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = opt.update(zeros, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    flat_mask = jax.tree_util.tree_leaves(mask)
    for leaf, decayed in zip(jax.tree_util.tree_leaves(new), flat_mask, strict=True):
        np.testing.assert_allclose(leaf, 1.0 - lr * wd if decayed else 1.0, rtol=1e-6)
