"""jaxla's experiments: one module per experiment, and a runner that writes a report.

Every experiment is a module ``experiments/<name>.py`` with

- ``NAME`` (str): its registry name, equal to the module name;
- ``TITLE`` (str): a human-readable title for the report;
- ``run(config: dict, out_dir: pathlib.Path) -> dict``: runs the experiment with
  ``config = {"mode": "quick" | "full", "seed": int}``, writes its PNG figures into ``out_dir`` and
  returns a JSON-serializable dict ``{"summary": str, "metrics": {...}, "figures": [{"file",
  "caption"}], "tables": [{"title", "columns", "rows"}]}`` (``tables`` is optional);
- a command line: ``python -m experiments.<name> [--quick | --full] [--out DIR] [--seed N]``.

Run them all with ``python -m experiments`` (see :mod:`experiments.runner`). The registry below
fixes the order in which they run; adding an experiment is a one-line change to it.
"""

from __future__ import annotations

__all__ = ["EXPERIMENTS"]

EXPERIMENTS: list[str] = [
    "linalg_tour",
    "pca_digits",
    "attention",
    "regression_and_regularization",
    "jacobian_hessian",
    "edge_of_stability",
    "lora_finetune",
    "recommender",
    "graphs",
    "lsa",
    "image_compression",
    "tensor_train",
]
"""Registered experiment module names, in the order the runner runs them."""
