"""Data-parallel training: 2 processes on loopback (gloo) against one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autoencoder_toolkit import distributed, setup
from autoencoder_toolkit.infomaxvaes import train_

from ._distributed_worker import build, data, flat

WORKER = Path(__file__).with_name("_distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two(tmp_path, **cfg) -> tuple[np.ndarray, list]:
    out = str(tmp_path / "params.npy")
    cfg = {"seed": 11, "init_seed": 0, "batch": 32, "steps": 3, "global_shuffle": False, "fused": False,
           "out": out, **cfg}
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(WORKER), json.dumps(cfg)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return np.load(out), json.load(open(out + ".json"))


class BlockShuffles:
    """One process replaying what two processes draw: global noise, one permutation per half."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def noise(self, shape):
        return torch.randn(shape, generator=self.g)

    def permutation(self, n):
        h = n // 2
        return torch.cat([torch.randperm(h, generator=self.g), torch.randperm(h, generator=self.g) + h])


def run_one(steps: int, rng, fused: bool) -> tuple[np.ndarray, list]:
    model = build(seed=0)
    opt = setup(torch.optim.Adam, model, lr=1e-2)
    x = data(64)
    losses = [train_(model, x, opt, loss_return=True, rng=rng, fused=fused) for _ in range(steps)]
    return flat(model).numpy(), losses


@pytest.mark.parametrize("fused", [False, True])
def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path, fused):
    params2, losses2 = run_two(tmp_path, fused=fused)
    params1, losses1 = run_one(3, BlockShuffles(11), fused)
    np.testing.assert_allclose(params2, params1, rtol=1e-4, atol=1e-5)
    assert len(losses2) == 3 and np.isfinite(losses2).all()  # rank 0's losses on its own shard


def test_global_shuffle_equals_one_process_and_permutes_the_global_batch(tmp_path):
    params2, _ = run_two(tmp_path, global_shuffle=True, global_probe=True)
    params1, _ = run_one(3, distributed.DistributedRNG(11), fused=False)
    np.testing.assert_allclose(params2, params1, rtol=1e-4, atol=1e-5)
    probe = np.load(str(tmp_path / "params.npy") + ".probe.npy")  # both ranks' shuffled rows
    rows = sorted(map(tuple, probe.tolist()))
    z0 = np.arange(64, dtype=np.float32).reshape(32, 2)
    expected = sorted(map(tuple, np.concatenate([z0, z0 + 1000]).tolist()))
    assert rows == expected  # a permutation of the global batch...
    ranks_mixed = {int(r[0] >= 1000) for r in probe[:32].tolist()}
    assert ranks_mixed == {0, 1}  # ...that moves codes across processes


def test_single_process_context_and_sharding():
    ctx = distributed.DistributedContext()
    assert ctx.is_main and not ctx.enabled

    def shards(epoch):
        return [[b.tolist() for b in distributed.shard_batches(
            100, 10, distributed.DistributedContext(rank=r, world_size=2), epoch=epoch, seed=0)] for r in (0, 1)]

    first = shards(1)
    assert [len(s) for s in first] == [5, 5]  # 50 samples per rank, 5 equal batches each
    flat_idx = [i for s in first for b in s for i in b]
    assert sorted(flat_idx) == list(range(100))  # the ranks split the data without overlap
    assert all(b == sorted(b) for s in first for b in s)
    assert shards(2) != first and shards(1) == first  # reshuffled per epoch, deterministic per seed
