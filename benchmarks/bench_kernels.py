"""Fused CuPy kernels against torch eager and ``torch.compile`` on the same per-sample terms.

    python -m benchmarks.bench_kernels                    # B = 256, 4096, 65536; D = 784
    python -m benchmarks.bench_kernels --sizes 256,1024 --dim 784 --out results.json

Terms (``autoencoder_toolkit.densities``), each on ``(B, D)`` float32 arrays (the MI bound
on ``(B,)`` critic values): the Bernoulli log-likelihood, the Gaussian log-likelihood
(log scale), the KL term (log scale), the reparameterisation ``μ + ε·exp(logσ)`` and the
MI bound ``mean g − mean exp(g̃ − 1)``.

Columns, forward only:

* ``torch eager``: the package's generic array-API code on CUDA tensors;
* ``torch.compile``: the same function through ``torch.compile`` (Inductor/Triton);
* ``CuPy fused``: the same function on CuPy arrays, which runs the fused kernel;
* ``bridge``: the fused kernel called on torch tensors through the autograd bridge
  (``kernels="cupy"``), DLPack hand-over included.

and forward + backward (``out.sum().backward()`` with respect to the differentiable
inputs): ``torch eager``, ``torch.compile`` and ``bridge``.

Each figure is the median over 5 repeats of the mean time per call in a loop of calls
long enough to take ~50 ms (synchronised at the end of the loop): what a training loop
pays per call, launch overhead included. ``GB/s`` is the bytes the term must read and
write once, over the fused kernel's time. Without a CUDA device the script exits with a
message saying so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable


def _fail_without_gpu() -> None:
    from autoencoder_toolkit.backends.cupy_backend import cuda_unavailable_reason

    why = cuda_unavailable_reason()
    try:
        import torch

        torch_ok = torch.cuda.is_available()
    except ImportError:
        torch_ok = False
    if why is not None or not torch_ok:
        reason = why or "torch sees no CUDA device (a CPU build of torch?)"
        sys.exit(f"bench_kernels: no CUDA device, nothing to measure ({reason}). Run it on a machine with "
                 "an NVIDIA GPU, CuPy (pip install 'autoencoder-toolkit[cuda]') and a CUDA build of torch.")


def _time(fn: Callable[[], Any], sync: Callable[[], None], repeats: int = 5, target_s: float = 0.05) -> float:
    """Median seconds per call of ``fn`` (loops of calls long enough to take ``target_s``)."""
    fn()
    sync()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        if time.perf_counter() - t0 >= target_s or n >= 1 << 16:
            break
        n *= 2
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def _terms(dim: int) -> dict[str, dict[str, Any]]:
    from autoencoder_toolkit import densities
    from autoencoder_toolkit.backends import torch_bridge as tb

    return {
        "bernoulli LL": {
            "generic": lambda x, p: densities.bernoulli_loglikelihood(x, p),
            "bridge": lambda x, p: tb.bernoulli_loglikelihood(x, p),
            "inputs": ("binary", "prob"), "grad": (False, True), "out_per_row": True},
        "gaussian LL (logσ)": {
            "generic": lambda x, m, s: densities.gaussian_loglikelihood(x, m, s, kind="log"),
            "bridge": lambda x, m, s: tb.gaussian_loglikelihood(x, m, s, kind="log"),
            "inputs": ("normal", "normal", "small"), "grad": (False, True, True), "out_per_row": True},
        "KL (logσ)": {
            "generic": lambda m, s: densities.gaussian_kl(m, s),
            "bridge": lambda m, s: tb.gaussian_kl(m, s),
            "inputs": ("normal", "small"), "grad": (True, True), "out_per_row": True},
        "reparameterize": {
            "generic": lambda m, s, e: densities.reparameterize_with_noise(m, s, e),
            "bridge": lambda m, s, e: tb.reparameterize(m, s, e),
            "inputs": ("normal", "small", "normal"), "grad": (True, True, False), "out_per_row": False},
        "MI bound": {
            "generic": lambda g, gs: densities.mutual_info_bound(g, gs),
            "bridge": lambda g, gs: tb.mutual_info_bound(g, gs),
            "inputs": ("normal", "normal"), "grad": (True, True), "vector": True, "out_per_row": False},
    }


def _make(kind: str, shape: tuple[int, ...], gen: Any) -> Any:
    import torch

    if kind == "binary":
        return (torch.rand(shape, generator=gen, device="cuda") > 0.5).float()
    if kind == "prob":
        return torch.rand(shape, generator=gen, device="cuda") * 0.96 + 0.02
    if kind == "small":
        return torch.randn(shape, generator=gen, device="cuda") * 0.5
    return torch.randn(shape, generator=gen, device="cuda")


def _bytes(term: dict, b: int, dim: int) -> int:
    """Bytes a term must move once: every input read, the output written (float32)."""
    n = b if term.get("vector") else b * dim
    out = b if term["out_per_row"] else (1 if term.get("vector") else n)
    return 4 * (n * len(term["inputs"]) + out)


def _maybe(fn: Callable[[], float]) -> float | None:
    """``fn()``, or ``None`` (reported as "-") when ``torch.compile`` cannot handle the term."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - report and go on with the other columns
        print(f"  (torch.compile failed: {type(err).__name__}: {str(err)[:200]})", file=sys.stderr)
        return None


def run(sizes: list[int], dim: int, compile_mode: str | None) -> list[dict[str, Any]]:
    import cupy
    import torch

    from autoencoder_toolkit.backends import use_cupy_kernels

    def sync() -> None:
        torch.cuda.synchronize()
        cupy.cuda.Device().synchronize()

    rows = []
    for name, term in _terms(dim).items():
        compiled = torch.compile(term["generic"], mode=compile_mode) if compile_mode != "off" else None
        for b in sizes:
            gen = torch.Generator(device="cuda").manual_seed(b)
            shape = (b,) if term.get("vector") else (b, dim)
            base = [_make(k, shape, gen) for k in term["inputs"]]
            arrays = [cupy.from_dlpack(t) for t in base]
            row: dict[str, Any] = {"term": name, "B": b, "D": 1 if term.get("vector") else dim}

            # forward
            with use_cupy_kernels(True):
                row["fwd_cupy_fused"] = _time(lambda: term["generic"](*arrays), sync)
            with use_cupy_kernels(False):
                row["fwd_cupy_generic"] = _time(lambda: term["generic"](*arrays), sync)
            with torch.no_grad():
                row["fwd_torch_eager"] = _time(lambda: term["generic"](*base), sync)
                if compiled is not None:
                    row["fwd_torch_compile"] = _maybe(lambda: _time(lambda: compiled(*base), sync))
                row["fwd_bridge"] = _time(lambda: term["bridge"](*base), sync)

            # forward + backward
            leaves = [t.detach().clone().requires_grad_(g) for t, g in zip(base, term["grad"])]

            def step(fn: Callable) -> Callable[[], None]:
                def go() -> None:
                    for t in leaves:
                        t.grad = None
                    fn(*leaves).sum().backward()
                return go

            row["bwd_torch_eager"] = _time(step(term["generic"]), sync)
            if compiled is not None:
                row["bwd_torch_compile"] = _maybe(lambda: _time(step(compiled), sync))
            row["bwd_bridge"] = _time(step(term["bridge"]), sync)
            row["bytes"] = _bytes(term, b, dim)
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


def _us(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e6:.1f}"


def _format_row(r: dict[str, Any]) -> str:
    fused = r["fwd_cupy_fused"]
    eager, comp = r["fwd_torch_eager"], r.get("fwd_torch_compile")
    cells = [r["term"], str(r["B"]), _us(eager), _us(comp), _us(fused), _us(r["fwd_bridge"]),
             f"{eager / fused:.1f}x", f"{comp / fused:.1f}x" if comp else "-", f"{r['bytes'] / fused / 1e9:.0f}",
             _us(r["bwd_torch_eager"]), _us(r.get("bwd_torch_compile")), _us(r["bwd_bridge"])]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| term | B | eager fwd (µs) | compile fwd (µs) | CuPy fused fwd (µs) | bridge fwd (µs) | "
          "fused vs eager | fused vs compile | fused GB/s | eager fwd+bwd (µs) | compile fwd+bwd (µs) | "
          "bridge fwd+bwd (µs) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,4096,65536", help="batch sizes B, comma-separated")
    parser.add_argument("--dim", type=int, default=784, help="elements per sample D (default 784)")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode ('default', 'max-autotune', ...) or 'off'")
    parser.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    _fail_without_gpu()
    import cupy
    import torch

    sizes = [int(s) for s in args.sizes.split(",") if s]
    mode = None if args.compile_mode == "default" else args.compile_mode
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}; torch {torch.__version__}; CuPy {cupy.__version__}; float32; D = {args.dim}")
    print()
    print(HEADER, flush=True)
    rows = run(sizes, args.dim, mode)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"device": props.name, "torch": torch.__version__, "cupy": cupy.__version__,
                       "dim": args.dim, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
