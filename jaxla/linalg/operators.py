"""jaxla.linalg.operators."""

__all__: list[str] = []
