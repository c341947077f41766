"""jaxla.linalg.lowrank."""

__all__: list[str] = []
