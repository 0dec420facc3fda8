"""Worker for tests/test_distributed.py, launched with torchrun (2 processes, gloo)."""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.distributed as dist

from autoencoder_toolkit import distributed, setup
from autoencoder_toolkit.decoders import BernoulliDecoder
from autoencoder_toolkit.encoders import JointGaussianLogEncoder
from autoencoder_toolkit.infomaxvaes import InfoMaxVAE, MutualInfoChain, train_


def build(seed: int) -> InfoMaxVAE:
    torch.manual_seed(seed)
    enc = JointGaussianLogEncoder(12, 3, [16], ["relu"], "identity")
    dec = BernoulliDecoder(12, 3, [16], ["relu"], "sigmoid")
    return InfoMaxVAE(enc * dec, MutualInfoChain(12, 3, [8], ["relu"], "identity"))


def data(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    return (torch.rand(n, 12, generator=g) > 0.5).float()


def flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def main() -> int:
    cfg = json.loads(sys.argv[1])
    ctx = distributed.init_process_group()
    assert ctx.world_size == 2 and ctx.enabled
    # Different initial weights per rank: wrap() must broadcast rank 0's.
    model = build(seed=cfg["init_seed"] + ctx.rank)
    wrapped = distributed.wrap(model, ctx)
    opt = setup(torch.optim.Adam, wrapped, lr=1e-2)
    rng = distributed.DistributedRNG(cfg["seed"], ctx, global_shuffle=cfg["global_shuffle"])
    b = cfg["batch"]
    x = data(2 * b)
    local = x[ctx.rank * b:(ctx.rank + 1) * b]
    losses = []
    for _ in range(cfg["steps"]):
        losses.append(train_(wrapped, local, opt, loss_return=True, rng=rng, fused=cfg["fused"]))
        p = flat(model)
        gathered = [torch.empty_like(p) for _ in range(2)]
        dist.all_gather(gathered, p)
        if not torch.equal(gathered[0], gathered[1]):
            raise SystemExit("parameters differ between ranks")
    if cfg.get("global_probe"):
        z = torch.arange(b * 2, dtype=torch.float32).reshape(b, 2) + 1000 * ctx.rank
        probe = distributed.DistributedRNG(5, ctx, global_shuffle=True).shuffle_rows(z)
        all_rows = [torch.empty_like(probe) for _ in range(2)]
        dist.all_gather(all_rows, probe)
        if ctx.is_main:
            np.save(cfg["out"] + ".probe.npy", torch.cat(all_rows).numpy())
    if ctx.is_main:
        np.save(cfg["out"], flat(model).numpy())
        with open(cfg["out"] + ".json", "w") as fh:
            json.dump(losses, fh)
    wrapped.close()
    del wrapped
    distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
