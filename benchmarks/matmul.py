"""Measured fp32 matrix-multiply throughput: the roofline of the training step.

Each product is run as the training step runs it (same shapes, same memory layouts):

* ``fwd``: ``torch.addmm(b, x, W.t())`` with ``x`` ``(B, in)`` and ``W`` ``(out, in)``
  (what ``nn.Linear`` calls);
* ``bwd_in``: ``torch.mm(dy, W)``, ``dy`` ``(B, out)``;
* ``bwd_w``: ``torch.mm(dy.t(), x)``.

and square products ``torch.mm(a, b)`` of ``n × n`` matrices for reference. A
measurement times blocks of back-to-back calls (each block long enough to dwarf the
timer) and reports the median block, so the figure is a sustained rate.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable

import torch

__all__ = ["GemmTiming", "time_gemm", "time_square", "measure_shapes"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_blocks(fn: Callable[[], object], device: torch.device, *, min_block_s: float,
                  budget_s: float, min_blocks: int, max_blocks: int) -> tuple[float, int, int]:
    """Median seconds per call over blocks of ``k`` calls; returns ``(median, k, blocks)``."""
    fn()
    _sync(device)
    # Find k: calls per block, so that a block lasts at least min_block_s.
    k = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        _sync(device)
        dt = time.perf_counter() - t0
        if dt >= min_block_s or k >= 1 << 16:
            break
        k = max(k * 2, int(k * min_block_s / max(dt, 1e-9)) + 1)
    per_call = [dt / k]
    start = time.perf_counter()
    while len(per_call) < max_blocks and (len(per_call) < min_blocks or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        _sync(device)
        per_call.append((time.perf_counter() - t0) / k)
    return statistics.median(per_call), k, len(per_call)


class GemmTiming(dict):
    """One measurement: ``kind, m, k, n, flops, seconds, gflops, calls_per_block, blocks``."""


def time_gemm(kind: str, m: int, k: int, n: int, device: torch.device | str = "cpu", *,
              min_block_s: float = 0.01, budget_s: float = 0.15, min_blocks: int = 5,
              max_blocks: int = 50) -> GemmTiming:
    """Time one product of shape ``(m×k) @ (k×n)`` laid out as ``kind`` (see the module doc)."""
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=g).to(device) - 0.5

    if kind == "fwd":          # x (m×k) @ Wᵀ, W is (n×k)
        x, w, b = rnd(m, k), rnd(n, k), rnd(n)
        fn = lambda: torch.addmm(b, x, w.t())  # noqa: E731
    elif kind == "bwd_in":     # dy (m×k) @ W (k×n)
        dy, w = rnd(m, k), rnd(k, n)
        fn = lambda: torch.mm(dy, w)  # noqa: E731
    elif kind == "bwd_w":      # dyᵀ (m×k) @ x (k×n), dy is (k×m)
        dy, x = rnd(k, m), rnd(k, n)
        fn = lambda: torch.mm(dy.t(), x)  # noqa: E731
    elif kind == "square":
        a, b2 = rnd(m, k), rnd(k, n)
        fn = lambda: torch.mm(a, b2)  # noqa: E731
    else:
        raise ValueError(f"kind: unknown product layout {kind!r}")
    sec, calls, blocks = _timed_blocks(fn, device, min_block_s=min_block_s, budget_s=budget_s,
                                       min_blocks=min_blocks, max_blocks=max_blocks)
    flops = 2 * m * k * n
    return GemmTiming(kind=kind, m=m, k=k, n=n, flops=flops, seconds=sec, gflops=flops / sec / 1e9,
                      calls_per_block=calls, blocks=blocks)


def time_square(sizes: Iterable[int], device: torch.device | str = "cpu", **kw: float) -> list[GemmTiming]:
    """Square ``n × n`` products for each ``n`` in ``sizes``."""
    return [time_gemm("square", n, n, n, device, **kw) for n in sizes]


def measure_shapes(shapes: Iterable[tuple[str, int, int, int]], device: torch.device | str = "cpu",
                   **kw: float) -> dict[tuple[str, int, int, int], GemmTiming]:
    """Time each distinct ``(kind, m, k, n)`` once."""
    out: dict[tuple[str, int, int, int], GemmTiming] = {}
    for key in sorted(set(shapes), key=lambda s: (s[1] * s[2] * s[3], s)):
        out[key] = time_gemm(*key, device=device, **kw)
    return out
