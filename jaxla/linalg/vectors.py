"""jaxla.linalg.vectors."""

__all__: list[str] = []
