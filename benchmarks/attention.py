"""Attention: chunked (memory-efficient) vs naive vs ``jax.nn.dot_product_attention``.

The jaxla side of every case is :func:`jaxla.nn.chunked_attention` (default chunk sizes); its
anchors are :func:`jaxla.nn.dot_product_attention` (the naive method that forms the full
``(B, N, T, S)`` logits) and ``jax.nn.dot_product_attention`` (XLA implementation). Causal
self-attention, batch 1, ``N_HEADS`` heads of dimension ``HEAD_DIM``, float32; "gradient" is
``jax.grad`` of ``sum(out * ct)`` with respect to ``q``, ``k`` and ``v``.

Peak memory is XLA's own account of the compiled function: ``memory_analysis().temp_size_in_bytes``
of ``jax.jit(f).lower(...).compile()``, the scratch memory the program needs beyond its arguments
and outputs. It is measured by compiling only, so it is reported even where the naive method is
too large to run here (sequence 16384: 8 GiB of logits forward, 12 GiB for the gradient); at that
size only the chunked side is timed. The figures appear as notes under the table, and
``python -m benchmarks.attention`` prints them alone.

Accuracy is the largest absolute error of the output (forward) or of ``dq`` (gradient) on 256
sampled query rows, against a float64 numpy computation of those rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

import jaxla
from benchmarks.harness import Anchor, Case

SUITE = "attention"

N_HEADS = 4
HEAD_DIM = 64
QUERY_CHUNK = 1024  # chunked_attention's defaults (Rabe & Staats 2021)
KEY_CHUNK = 4096
FULL_SIZES = (1024, 4096, 16384)
QUICK_SIZES = (256, 512)
MAX_RUN_NAIVE = 4096  # longest sequence at which the naive methods are executed
SAMPLED_ROWS = 256

chunked = functools.partial(
    jaxla.nn.chunked_attention, query_chunk_size=QUERY_CHUNK, key_chunk_size=KEY_CHUNK
)
naive = jaxla.nn.dot_product_attention
jax_nn = functools.partial(jax.nn.dot_product_attention, implementation="xla")
METHODS = {"chunked": chunked, "naive": naive, "jax.nn": jax_nn}


def forward(f):
    """``(q, k, v, ct) -> out`` for causal attention ``f`` (``ct`` unused: same signature)."""

    def run(q, k, v, ct):
        del ct
        return f(q, k, v, is_causal=True)

    return run


def gradient(f):
    """``(q, k, v, ct) -> (dq, dk, dv)``, the vector-Jacobian product of causal attention ``f``."""

    def loss(q, k, v, ct):
        return jnp.sum(f(q, k, v, is_causal=True) * ct)

    return jax.grad(loss, argnums=(0, 1, 2))


KINDS = {"forward": forward, "gradient": gradient}


def temp_bytes(fn, t: int) -> int:
    """Scratch bytes of ``jax.jit(fn)`` compiled for sequence length ``t`` (nothing is run)."""
    spec = jax.ShapeDtypeStruct((1, t, N_HEADS, HEAD_DIM), jnp.float32)
    compiled = jax.jit(fn).lower(spec, spec, spec, spec).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def memory_table(sizes=FULL_SIZES) -> dict[str, dict[int, dict[str, int]]]:
    """``{kind: {t: {method: temp bytes}}}`` for every kind, size and method."""
    return {
        kind: {t: {name: temp_bytes(make(f), t) for name, f in METHODS.items()} for t in sizes}
        for kind, make in KINDS.items()
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def memory_note(table: dict[int, dict[str, int]]) -> str:
    parts = []
    for t, row in table.items():
        c = row["chunked"]
        parts.append(
            f"T={t}: chunked {_mib(c)}, naive {_mib(row['naive'])} "
            f"({row['naive'] / c:.1f}x chunked), jax.nn {_mib(row['jax.nn'])} "
            f"({row['jax.nn'] / c:.1f}x)"
        )
    return (
        "peak scratch memory (XLA memory_analysis temp bytes, compiled only): "
        + "; ".join(parts)
        + f". Chunk sizes {QUERY_CHUNK} queries x {KEY_CHUNK} keys. Naive methods are timed up "
        f"to T={MAX_RUN_NAIVE}; beyond, their memory is reported but they are not run."
    )


def _data(t: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(t)
    shape = (1, t, N_HEADS, HEAD_DIM)
    return tuple(rng.standard_normal(shape, dtype=np.float32) for _ in range(4))


def reference_rows(q, k, v, ct, rows):
    """float64 causal attention output and ``dq`` at query ``rows`` (numpy, independent)."""
    q, k, v, ct = (np.asarray(a[0], np.float64) for a in (q, k, v, ct))  # (T, N, H)
    scale = 1.0 / np.sqrt(HEAD_DIM)
    out = np.empty((len(rows), N_HEADS, HEAD_DIM))
    dq = np.empty_like(out)
    for n in range(N_HEADS):
        logits = scale * q[rows, n] @ k[:, n].T  # (R, S)
        allowed = np.arange(k.shape[0])[None, :] <= rows[:, None]
        e = np.where(allowed, np.exp(logits - np.where(allowed, logits, -np.inf).max(-1)[:, None]),
                     0.0)
        p = e / e.sum(-1, keepdims=True)
        o = p @ v[:, n]
        dp = ct[rows, n] @ v[:, n].T
        ds = p * (dp - np.sum(ct[rows, n] * o, -1)[:, None])
        out[:, n], dq[:, n] = o, scale * ds @ k[:, n]
    return out, dq


def cases(quick: bool) -> Iterator[Case]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    notes = {kind: memory_note(table) for kind, table in memory_table(sizes).items()}
    for t in sizes:
        args = _data(t)
        rows = np.sort(np.random.default_rng(1).choice(t, size=min(SAMPLED_ROWS, t), replace=False))
        ref_out, ref_dq = reference_rows(*args, rows)
        run_naive = t <= MAX_RUN_NAIVE
        for kind, make in KINDS.items():
            ref = ref_out if kind == "forward" else ref_dq

            def accuracy(out, ref=ref, kind=kind, rows=rows):
                x = out if kind == "forward" else out[0]
                return float(np.max(np.abs(np.asarray(x, np.float64)[0, rows] - ref)))

            anchors = []
            if run_naive:
                anchors = [
                    Anchor("jaxla.nn.dot_product_attention (naive)", make(naive), args, jit=True),
                    Anchor("jax.nn.dot_product_attention (xla)", make(jax_nn), args, jit=True),
                ]
            matmuls = 2 if kind == "forward" else 6  # of the naive method
            yield Case(
                name=f"attention {kind}",
                size=f"T=S={t}, N={N_HEADS}, H={HEAD_DIM}, causal",
                fn=make(chunked),
                args=args,
                anchors=anchors,
                accuracy=accuracy,
                metric=(
                    f"max abs error of {'out' if kind == 'forward' else 'dq'} on "
                    f"{SAMPLED_ROWS} sampled query rows vs float64 numpy"
                ),
                label="jaxla.nn.chunked_attention",
                flops=2.0 * matmuls * t * t * N_HEADS * HEAD_DIM,
                note=notes[kind],
            )


if __name__ == "__main__":
    for kind, table in memory_table().items():
        print(f"{kind}:")
        for t, row in table.items():
            c = row["chunked"]
            print(
                f"  T={t:6d}  chunked {_mib(c):>10s}  naive {_mib(row['naive']):>10s} "
                f"(naive/chunked {row['naive'] / c:6.1f})  jax.nn {_mib(row['jax.nn']):>10s} "
                f"(jax.nn/chunked {row['jax.nn'] / c:6.1f})"
            )
