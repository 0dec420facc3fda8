"""Throughput of data-parallel training: 1 process against N processes on this machine.

    python -m benchmarks.distributed                  # mnist-mlp, 128 samples per process, 1 and 2 processes
    python -m benchmarks.distributed --nproc 1,2,4 --batch 64 --device cuda

Each configuration runs the fused InfoMax-VAE step (``train_(..., fused=True)``) through
:mod:`autoencoder_toolkit.distributed` (DistributedDataParallel, gloo on CPU, NCCL on
CUDA) for a fixed number of timed steps after warm-up, with ``--batch`` samples per
process (weak scaling: N processes handle N times the samples per step). Each process
uses ``--threads`` torch threads (default 1). Reported: the median step time over the
processes' steps, samples per second of the whole job, and the scaling efficiency
``throughput(N) / (N · throughput(1))``. Results are written to
``benchmarks/results/distributed_<device>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"


def worker(args: argparse.Namespace) -> None:
    """One process of a configuration (run by torchrun)."""
    import numpy as np
    import torch

    from autoencoder_toolkit import distributed, setup
    from autoencoder_toolkit.decoders import BernoulliDecoder
    from autoencoder_toolkit.encoders import JointGaussianLogEncoder
    from autoencoder_toolkit.infomaxvaes import InfoMaxVAE, MutualInfoChain, train_

    torch.set_num_threads(args.threads)
    ctx = distributed.init_process_group(device=args.device)
    torch.manual_seed(0)
    h = [400, 400]
    model = InfoMaxVAE(JointGaussianLogEncoder(784, 20, h, ["relu"] * 2, "identity")
                       * BernoulliDecoder(784, 20, h, ["relu"] * 2, "sigmoid"),
                       MutualInfoChain(784, 20, h, ["relu"] * 2, "identity"))
    wrapped = distributed.wrap(model, ctx)
    opt = setup(torch.optim.Adam, wrapped, lr=1e-3, fused=True)
    rng = distributed.DistributedRNG(0, ctx)
    g = torch.Generator().manual_seed(ctx.rank)
    x = (torch.rand(args.batch, 784, generator=g) > 0.5).float().to(ctx.device)
    times = []
    for i in range(args.warmup + args.steps):
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        train_(wrapped, x, opt, rng=rng, fused=True)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    step = float(np.median(times))
    steps = distributed.all_reduce_sum([step], ctx) / ctx.world_size
    if ctx.is_main:
        Path(args.result).write_text(json.dumps({"median_step_s": float(steps[0])}))
    wrapped.close()
    distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(nproc: int, args: argparse.Namespace, tmp: Path) -> dict:
    result = tmp / f"n{nproc}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(_free_port()), "-m", "benchmarks.distributed", "--worker",
           "--result", str(result), "--batch", str(args.batch), "--steps", str(args.steps), "--warmup",
           str(args.warmup), "--threads", str(args.threads), "--device", args.device]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1],
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark with {nproc} processes failed:\n{proc.stderr[-2000:]}")
    step = json.loads(result.read_text())["median_step_s"]
    return {"nproc": nproc, "median_step_ms": step * 1e3, "samples_per_s": nproc * args.batch / step}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", default="1,2", help="comma-separated process counts (default 1,2)")
    p.add_argument("--batch", type=int, default=128, help="samples per process per step (default 128)")
    p.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up steps (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default=str(OUT), help="output folder (default benchmarks/results)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    import tempfile

    import torch

    counts = [int(v) for v in args.nproc.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_config(n, args, Path(tmp)) for n in counts]
    base = next((r for r in rows if r["nproc"] == 1), None)
    for r in rows:
        r["efficiency"] = r["samples_per_s"] / (r["nproc"] * base["samples_per_s"]) if base else None
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "device": args.device,
            "threads_per_process": args.threads, "batch_per_process": args.batch, "steps": args.steps,
            "workload": "mnist-mlp (D=784, hidden 400,400, latent 20, critic 400,400), fused step, Adam(fused)"}
    lines = ["| processes | step (ms, median) | samples/s | scaling efficiency |", "|---:|---:|---:|---:|"]
    for r in rows:
        eff = "–" if r["efficiency"] is None else f"{r['efficiency']:.0%}"
        lines.append(f"| {r['nproc']} | {r['median_step_ms']:.1f} | {r['samples_per_s']:,.0f} | {eff} |")
    table = "\n".join(lines)
    note = (f"\n\n{info['workload']}; {args.batch} samples per process per step, {args.threads} torch thread(s) "
            f"per process, {args.device}, {info['cpu_count']} logical CPUs, torch {info['torch']}, {info['date']}.\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"distributed_{args.device}.md").write_text(table + note)
    (out / f"distributed_{args.device}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    print(table + note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
