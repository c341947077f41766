"""jaxla.linalg.decompositions."""

__all__: list[str] = []
