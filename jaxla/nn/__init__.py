"""jaxla.nn: neural-network building blocks as pure functions.

Layers are pairs ``xxx_init(key, ...) -> params`` and ``xxx(params, x, ...) -> y`` over dict
parameter pytrees with stable names; functional pieces such as attention take arrays and return
arrays. Everything works under ``jax.jit``, ``jax.vmap`` and ``jax.grad``.
"""

from jaxla.nn import attention, initializers, layers, transformer, tt
from jaxla.nn.attention import *  # noqa: F403
from jaxla.nn.initializers import *  # noqa: F403
from jaxla.nn.layers import *  # noqa: F403
from jaxla.nn.transformer import *  # noqa: F403
from jaxla.nn.tt import *  # noqa: F403

__all__ = [*attention.__all__, *initializers.__all__, *layers.__all__, *transformer.__all__,
           *tt.__all__]
