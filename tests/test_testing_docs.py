"""docs/testing.md runs as written: every Python block, the pytest fixtures through pytest itself."""

from __future__ import annotations

import re
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
BLOCKS = ("testing-ten-lines", "testing-own-step", "testing-hypothesis", "testing-strategies", "testing-conftest",
          "testing-fixtures")

pytest_plugins = ["pytester"]


def _block(name: str) -> str:
    m = re.search(rf"<!-- {name}:start -->\s*```python\n(.*?)```\s*<!-- {name}:end -->", PAGE, re.S)
    assert m, f"docs/testing.md has no {name} block"
    return m.group(1)


def _run_tests_of(name: str) -> dict:
    """Execute a block, then every test function it defines; returns its namespace."""
    namespace: dict = {"__name__": f"docs_testing_{name.replace('-', '_')}"}
    exec(compile(_block(name), f"docs/testing.md {name}", "exec"), namespace)
    tests = [f for key, f in namespace.items() if key.startswith("test_") and callable(f)]
    for test in tests:
        test()
    namespace["__tests__"] = len(tests)
    return namespace


def test_every_python_block_of_the_page_is_run_by_these_tests():
    blocks = re.findall(r"```python\n", PAGE)
    named = re.findall(r"<!-- (testing-[a-z-]+):start -->\s*```python\n", PAGE)
    assert len(blocks) == len(named) == len(BLOCKS) and sorted(named) == sorted(BLOCKS)


def test_the_ten_line_example_runs():
    namespace = _run_tests_of("testing-ten-lines")
    assert namespace["__tests__"] == 1
    body = _block("testing-ten-lines").split("def test_my_infomaxvae():\n", 1)[1]
    assert len([line for line in body.splitlines() if line.strip()]) <= 10


def test_the_own_step_example_runs_and_shows_the_failure(capsys):
    _run_tests_of("testing-own-step")
    out = capsys.readouterr().out
    assert out.startswith("the step is not atomic: when the encoder's output was NaN at its 1st call")


def test_the_hypothesis_examples_run_in_seconds():
    start = time.perf_counter()
    namespace = _run_tests_of("testing-hypothesis")
    elapsed = time.perf_counter() - start
    assert namespace["__tests__"] == 2
    # the first is the 50-example property over strategies.infomaxvaes_and_batches()
    assert "@settings(max_examples=50" in _block("testing-hypothesis")
    print(f"docs/testing.md's Hypothesis examples (50 + 10 examples): {elapsed:.2f} s")
    assert elapsed < 60  # seconds on two shared cores, not minutes


def test_the_strategies_example_runs():
    assert _run_tests_of("testing-strategies")["__tests__"] == 1


def test_the_fixture_examples_run_under_pytest(pytester):
    pytester.makeconftest(_block("testing-conftest"))
    pytester.makepyfile(test_my_model=_block("testing-fixtures"))
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
