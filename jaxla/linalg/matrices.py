"""jaxla.linalg.matrices."""

__all__: list[str] = []
