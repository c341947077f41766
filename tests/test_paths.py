"""Leaf paths and patterns shared by LoRA, curvature filters and penalties."""

import re

import jax
import jax.numpy as jnp
import pytest

from jaxla import _paths

TREE = {
    "dense": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)},
    "blocks": [{"attn": {"w": jnp.zeros(2)}}, {"attn": {"w": jnp.zeros(2)}}],
}


def test_leaf_paths_join_keys_and_indices():
    assert _paths.leaf_paths(TREE) == [
        "blocks/0/attn/w",
        "blocks/1/attn/w",
        "dense/b",
        "dense/w",
    ]


def test_glob_and_regex_patterns():
    assert _paths.matches("*/w", "blocks/0/attn/w")
    assert _paths.matches("dense/?", "dense/b")
    assert not _paths.matches("dense", "dense/w")  # inner nodes are not leaves
    assert _paths.matches(re.compile(r"blocks/[01]/.*"), "blocks/1/attn/w")
    assert not _paths.matches(re.compile(r"blocks/1"), "blocks/1/attn/w")  # fullmatch


def test_select_include_exclude():
    chosen = _paths.select(TREE, "*w", exclude=re.compile("blocks/1/.*"), fn="jaxla.t.f")
    assert chosen == {
        "dense": {"w": True, "b": False},
        "blocks": [{"attn": {"w": True}}, {"attn": {"w": False}}],
    }
    everything = _paths.select(TREE, None, fn="jaxla.t.f")
    assert jax.tree_util.tree_leaves(everything) == [True] * 4


def test_unmatched_pattern_names_it_and_lists_nearest_paths():
    with pytest.raises(ValueError, match=re.escape(
        "jaxla.t.f: `targets` pattern 'dense/kernel' must match at least one leaf path, got no "
        "match; nearest paths: 'dense/"
    )):
        _paths.select(TREE, ["*/w", "dense/kernel"], fn="jaxla.t.f", include_name="targets")
    assert _paths.select(TREE, "nothing", fn="f", strict=False)["dense"]["w"] is False


def test_bad_pattern_type():
    with pytest.raises(TypeError, match=re.escape("jaxla.t.f: `exclude` must be a glob string")):
        _paths.select(TREE, None, exclude=3, fn="jaxla.t.f")
