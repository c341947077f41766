"""jaxla.linalg.krylov."""

__all__: list[str] = []
