"""Reading how an array is sharded from its type."""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import AxisType


def explicit_sharding(a: Any) -> Any:
    """The sharding in ``a``'s type when ``a`` is split over ``Explicit`` mesh axes, else None.

    With ``Explicit`` axes the sharding is part of the type, also of a traced array, and
    operations whose result sharding is ambiguous (a gather of rows, a decomposition) must be
    told it. ``None`` for an unsharded or replicated array, for ``Auto`` axes (XLA decides) and
    for anything without a typed sharding.
    """
    try:
        sharding = jax.typeof(a).sharding
        explicit = any(t == AxisType.Explicit for t in sharding.mesh.axis_types)
        split = any(e is not None for e in sharding.spec)
    except Exception:  # no typed sharding (numpy input, no mesh, an older JAX)
        return None
    return sharding if explicit and split else None
