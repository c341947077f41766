"""Helpers of tests/test_distributed.py: scripts run in subprocesses with several CPU devices."""
