"""jaxla: the linear algebra of machine learning, as pure JAX functions."""

from jaxla import (
    autodiff,
    curvature,
    datasets,
    distributed,
    linalg,
    lora,
    models,
    nn,
    pca,
    train,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "autodiff",
    "curvature",
    "datasets",
    "distributed",
    "linalg",
    "lora",
    "models",
    "nn",
    "pca",
    "train",
]
