"""Test configuration shared by the whole suite.

- float64 is enabled so gradients can be checked with ``jax.test_util.check_grads`` in double
  precision. Tests of float32 behaviour pass float32 arrays explicitly and assert the dtype of the
  result, which also catches accidental promotion to float64 inside jaxla.
- Implicit rank promotion raises, so jaxla never relies on accidental broadcasting.
- XLA compiles with ``--xla_backend_optimization_level=0`` unless ``XLA_FLAGS`` already sets a
  level: the suite compiles hundreds of small programs, and on a 2-core CPU compiling dominates
  its time (a third less with level 0). Results agree with the default level to rounding, not
  bit for bit (relative differences measured up to 1e-6 in float32 and 2e-15 in float64 on
  elementwise functions, reductions, products and gradients), which every tolerance here
  allows; benchmarks and experiments run with XLA's default level, and so does CI's slow step
  (``.ci/run`` sets level 3, XLA's default, in ``XLA_FLAGS``).
"""

import os

import jax
import numpy as np
import pytest
from _pytest.doctest import DoctestItem
from hypothesis import HealthCheck, settings

_LEVEL = "--xla_backend_optimization_level"
if _LEVEL not in os.environ.get("XLA_FLAGS", ""):  # read when the backend starts, after this
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_LEVEL}=0".strip()
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "jaxla",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.register_profile("slow", parent=settings.get_profile("jaxla"), max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "jaxla"))


@pytest.fixture
def rng():
    """A seeded numpy Generator: every test gets the same data on every run."""
    return np.random.default_rng(0)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    """The documentation's examples (docstrings and the README, as doctests) are marked ``slow``.

    They run eagerly and together compile about 1,250 programs (105 s on their own, with the
    default run's two workers on 2 cores), so they run with the heavier checks:
    ``pytest -m slow``, which CI runs.
    """
    for item in items:
        if isinstance(item, DoctestItem):
            item.add_marker(pytest.mark.slow)
