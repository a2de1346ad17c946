"""`ruff check` is clean on the whole repository (configuration in pyproject.toml)."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    pytest.importorskip("ruff", reason="ruff is in the `test` extra: pip install '.[test]'")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"ruff check found problems (fix them, or `ruff check --fix`):\n{result.stdout}"


def test_ruff_format_leaves_the_code_unchanged():
    pytest.importorskip("ruff", reason="ruff is in the `test` extra: pip install '.[test]'")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--no-cache", "--check", str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"files not formatted (run `ruff format`):\n{result.stdout}"
