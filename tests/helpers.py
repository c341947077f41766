"""Small assertion helpers shared by the test modules."""

import re

import jax
import numpy as np
from jax.test_util import check_grads


def msg(text):
    """Regex matching ``text`` literally and in full (for ``pytest.raises(match=...)``).

    pytest also matches the exception's notes, one per line after the message; JAX adds one to
    errors raised while tracing under ``jit``. They may follow ``text`` on lines of their own.
    """
    return "^" + re.escape(text) + r"(?:\n[\s\S]*)?$"


def rel_err(out, ref):
    """Largest absolute difference relative to the largest reference entry, in float64."""
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    return np.max(np.abs(out - ref)) / np.max(np.abs(ref))


def grads2(f, args):
    """Second-order forward and reverse derivative check of jit(f) (float64)."""
    check_grads(jax.jit(f), args, order=2, modes=["fwd", "rev"])
