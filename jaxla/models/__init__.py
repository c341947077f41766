"""jaxla.models: the classic models of machine learning as exact, fast, pure functions.

- :mod:`jaxla.models.linear`: linear, ridge and logistic regression;
- :mod:`jaxla.models.classifiers`: a multi-layer perceptron classifier trained with any optax
  optimizer;
- :mod:`jaxla.models.graphs`: graph Laplacians, spectral embedding, clustering and bisection,
  PageRank on dense or sparse adjacency;
- :mod:`jaxla.models.lsa`: latent semantic analysis (TF-IDF, truncated SVD, ranked queries);
- :mod:`jaxla.models.image`: image compression by truncated SVD, PSNR and storage ratio;
- :mod:`jaxla.models.recommender`: matrix factorization by alternating least squares or
  gradient descent, with top-N recommendation.

Fits return NamedTuples that pass through ``jax.jit`` and ``jax.vmap``; results match
scikit-learn's (and networkx's, for graphs).
"""

from jaxla.models import classifiers, graphs, image, linear, lsa, recommender
from jaxla.models.classifiers import *  # noqa: F403
from jaxla.models.graphs import *  # noqa: F403
from jaxla.models.image import *  # noqa: F403
from jaxla.models.linear import *  # noqa: F403
from jaxla.models.lsa import *  # noqa: F403
from jaxla.models.recommender import *  # noqa: F403

__all__ = [*linear.__all__, *classifiers.__all__, *graphs.__all__, *image.__all__, *lsa.__all__,
           *recommender.__all__]
