"""jaxla.models: the classic models of machine learning as exact, fast, pure functions.

Linear, ridge and logistic regression (:mod:`jaxla.models.linear`) and a multi-layer perceptron
classifier trained with any optax optimizer (:mod:`jaxla.models.classifiers`), and a
matrix-factorization recommender by alternating least squares or gradient descent
(:mod:`jaxla.models.recommender`). Fits return
NamedTuples that pass through ``jax.jit`` and ``jax.vmap``; results match scikit-learn's.
"""

from jaxla.models import classifiers, linear, recommender
from jaxla.models.classifiers import *  # noqa: F403
from jaxla.models.linear import *  # noqa: F403
from jaxla.models.recommender import *  # noqa: F403

__all__ = [*linear.__all__, *classifiers.__all__, *recommender.__all__]
