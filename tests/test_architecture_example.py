"""docs/architecture.md's worked example runs as written: a new decoder in two files."""

from __future__ import annotations

import re
from pathlib import Path

DOC = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")


def _block(name: str) -> str:
    m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", DOC, re.S)
    assert m, f"docs/architecture.md has no {name} block"
    return m.group(1)


def test_a_new_decoder_trains_saves_loads_and_serves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for name in ("laplace-distribution", "laplace-decoder", "laplace-use"):
        exec(compile(_block(name), f"docs/architecture.md {name}", "exec"), namespace)
    assert (tmp_path / "laplace.safetensors").is_file()
    model = namespace["model"]
    assert type(model.vae.decoder).__name__ == "JointLaplaceDecoder"
    # the log-likelihood is the Laplace one, computed by hand
    import numpy as np
    import torch

    x = namespace["x"]
    with torch.no_grad():
        out = model.vae.decoder(torch.zeros(3, 2))
        ll = model.vae.decoder.loglikelihood(x[:3], torch.zeros(3, 2), out)
    mu, logb = out.μ.double().numpy(), out.logb.double().numpy()
    expected = (-np.abs(x[:3].double().numpy() - mu) * np.exp(-logb) - logb - np.log(2.0)).sum(axis=1)
    np.testing.assert_allclose(ll.double().numpy(), expected, rtol=1e-5)
