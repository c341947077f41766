"""jaxla.linalg: the mathematics of machine learning, with no ML in it.

Vectors and norms, matrices and solves, decompositions with canonical forms and safe gradients,
low-rank approximation, Krylov methods and tensor trains. Every function is pure and works under
``jax.jit``, ``jax.vmap`` and (where differentiable) ``jax.grad``.
"""

from jaxla.linalg import decompositions, krylov, lowrank, matrices, operators, tensor, vectors
from jaxla.linalg.decompositions import *  # noqa: F403
from jaxla.linalg.krylov import *  # noqa: F403
from jaxla.linalg.lowrank import *  # noqa: F403
from jaxla.linalg.matrices import *  # noqa: F403
from jaxla.linalg.operators import *  # noqa: F403
from jaxla.linalg.tensor import *  # noqa: F403
from jaxla.linalg.vectors import *  # noqa: F403

__all__ = [
    *vectors.__all__,
    *matrices.__all__,
    *decompositions.__all__,
    *operators.__all__,
    *lowrank.__all__,
    *krylov.__all__,
    *tensor.__all__,
]
