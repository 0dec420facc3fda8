"""docs/migration.md runs as written: every Python block, in order, as one script, each next to its Julia block."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

DOC = (Path(__file__).resolve().parents[1] / "docs" / "migration.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"<!-- ([\w-]+):start -->\s*```python\n(.*?)```\s*<!-- \1:end -->", re.S)


def _blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(DOC)


def test_every_python_block_follows_its_julia_block():
    blocks = _blocks()
    assert [name for name, _ in blocks] == ["data", "layers", "vae", "vae-training", "explore", "infomax",
                                            "infomax-page", "schedule", "ae", "random"]
    for name, _ in blocks:
        before = DOC[:DOC.index(f"<!-- {name}:start -->")]
        assert before.rstrip().endswith("```"), name
        assert before.rfind("```julia") > before.rfind("```python"), f"{name} has no Julia block before it"


def test_the_guide_runs_as_one_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the small batches of the guide (MI bound below 64)
        for name, code in _blocks():
            exec(compile(code, f"docs/migration.md {name}", "exec"), namespace)
    # the VAE step trained and its checkpoint holds the history
    assert len(namespace["train_loss"]) == 1 and all(v == v for v in namespace["train_loss"])
    assert (tmp_path / "output" / "vae_epoch0001" / "state.json").is_file()
    # the schedule loop: four checkpoints, the last epoch's learning rate restored
    assert sorted(p.name for p in (tmp_path / "output").glob("epoch*")) == [f"epoch{e:04d}" for e in range(1, 5)]
    assert namespace["saved"].state["β"] == pytest.approx(1.0)  # epoch 4 of 4 in 2 cycles: τ = 0.5 → βmax
    # Julia's draws: the shuffle is a permutation and the noise has Julia's first value for seed 42
    assert sorted(namespace["p"].tolist()) == list(range(64))
    assert namespace["r"].dtype == torch.float64
