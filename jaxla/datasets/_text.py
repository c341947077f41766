"""Embedded data (see jaxla.datasets)."""

__all__: list[str] = []
