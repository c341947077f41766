"""Helpers of tests/test_train.py: a shared training problem and a script run in a subprocess."""
