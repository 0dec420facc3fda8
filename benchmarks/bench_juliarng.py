#!/usr/bin/env python
"""Timings of the Julia-compatible streams in ``autoencoder_toolkit.juliarng``.

Prints the median (and the fastest) wall time over several repeats for the calls the
models make (``randn(Float32, L, B)`` noise and ``shuffle(rng, 1:B)`` permutations)
and a few related ones.  Each repeat builds a fresh generator outside the timed
region, so only the sampling is measured (seeding has its own rows).

Usage::

    python benchmarks/bench_juliarng.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import numpy as np

from autoencoder_toolkit import juliarng as J


def timed(setup: Callable[[], object], work: Callable[[object], object], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        state = setup()
        start = time.perf_counter()
        work(state)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    r = args.repeats

    cases: list[tuple[str, Callable[[], object], Callable[[object], object]]] = [
        ("MersenneTwister(seed) [1.11, SHA-256]", lambda: None, lambda _: J.MersenneTwister(1234)),
        ("MersenneTwister(seed) [1.10]", lambda: None, lambda _: J.MersenneTwister(1234, julia="1.10")),
        ("Xoshiro(seed)", lambda: None, lambda _: J.Xoshiro(1234)),
        ("randn 64x256 float32, seed_ (global)", lambda: J.seed_(1),
         lambda g: J.randn(g, 64, 256, dtype=np.float32)),
        ("randn 64x256 float32, MersenneTwister", lambda: J.MersenneTwister(1),
         lambda g: J.randn(g, 64, 256, dtype=np.float32)),
        ("randn 64x256 float64, Xoshiro (bulk path)", lambda: J.Xoshiro(1),
         lambda g: J.randn(g, 64, 256)),
        ("randn 64x256 float64, MersenneTwister (bulk)", lambda: J.MersenneTwister(1),
         lambda g: J.randn(g, 64, 256)),
        ("shuffle range(10000), Xoshiro [1.11]", lambda: J.Xoshiro(1),
         lambda g: J.shuffle(g, range(10_000))),
        ("shuffle range(10000), Xoshiro [1.10]", lambda: J.Xoshiro(1, julia="1.10"),
         lambda g: J.shuffle(g, range(10_000))),
        ("shuffle range(10000), MersenneTwister [1.11]", lambda: J.MersenneTwister(1),
         lambda g: J.shuffle(g, range(10_000))),
        ("shuffle range(10000), MersenneTwister [1.10]", lambda: J.MersenneTwister(1, julia="1.10"),
         lambda g: J.shuffle(g, range(10_000))),
        ("randperm 10000, seed_", lambda: J.seed_(1), lambda g: J.randperm(g, 10_000)),
        ("shuffle range(256), seed_ (one batch)", lambda: J.seed_(1), lambda g: J.shuffle(g, range(256))),
        ("rand 16384 float64, Xoshiro (8 lanes)", lambda: J.Xoshiro(1), lambda g: J.rand(g, 16_384)),
        ("rand 16384 float64, MersenneTwister (fill)", lambda: J.MersenneTwister(1),
         lambda g: J.rand(g, 16_384)),
    ]

    print(f"autoencoder_toolkit.juliarng  (Python {platform.python_version()}, NumPy {np.__version__}, "
          f"{platform.machine()}, {r} repeats)")
    width = max(len(name) for name, _, _ in cases)
    print(f"{'case':<{width}}  {'median ms':>10}  {'min ms':>8}")
    print("-" * (width + 22))
    for name, setup, work in cases:
        med, best = timed(setup, work, r)
        print(f"{name:<{width}}  {med:10.2f}  {best:8.2f}")


if __name__ == "__main__":
    main()
