"""Side-by-side benchmarks of jaxla against its anchors (numpy, scipy, scikit-learn, ...).

Run ``python -m benchmarks --help``; ``benchmarks/harness.py`` explains how to add a suite.
This file imports nothing on purpose: the runner may re-execute itself with a cleaned
environment before numpy (and its BLAS) is loaded.
"""
