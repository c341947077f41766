"""``python -m experiments``: run the registered experiments and write a report."""

from experiments.runner import main

raise SystemExit(main())
