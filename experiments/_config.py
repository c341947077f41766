"""The configuration of an experiment run: its mode, its seed and its overrides."""

from __future__ import annotations

from typing import Any

from jaxla._checks import check_int, check_option, fail

__all__ = ["merge_config"]

MODES = ("quick", "full")


def merge_config(config: dict[str, Any], quick: dict[str, Any], full: dict[str, Any],
                 fn: str) -> tuple[str, int, dict[str, Any]]:
    """``(mode, seed, cfg)``: the mode's defaults (``quick`` or ``full``) with every other entry
    of ``config`` replacing the default of the same name.

    ``config["mode"]`` must be ``"quick"`` or ``"full"`` and ``config["seed"]`` an int >= 0; an
    entry that names no default raises, listing the known ones. The values are not checked here:
    each experiment checks its own.
    """
    mode = check_option(config.get("mode"), MODES, fn, "config['mode']")
    seed = check_int(config.get("seed"), fn, "config['seed']", min=0)
    cfg = dict(quick if mode == "quick" else full)
    for k, v in config.items():
        if k in ("mode", "seed"):
            continue
        if k not in cfg:
            fail(fn, f"`config` has an unknown entry {k!r}; known: {', '.join(sorted(cfg))}")
        cfg[k] = v
    return mode, seed, cfg
