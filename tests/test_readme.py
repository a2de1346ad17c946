"""Every Python block of README.md runs as written.

Each block runs verbatim in a fresh Python process inside an empty folder (the
files it writes land there). Only the amount of training is cut, from outside
the block: `keras.Model.fit` is wrapped to run at most `QUICK_EPOCHS` epochs of
at most `QUICK_STEPS` steps, so the README keeps its real settings and CI stays
fast. Everything else (data, models, save, export, printing) is the user's path.
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")

QUICK_EPOCHS = 1
QUICK_STEPS = 2

# Runs before the block, in the same process. It changes nothing but how long `fit` trains.
PRELUDE = textwrap.dedent(
    f"""
    import runpy, sys
    import keras

    _fit = keras.Model.fit

    def _quick_fit(self, *args, **kwargs):
        kwargs["epochs"] = min(kwargs.get("epochs", 1), {QUICK_EPOCHS})
        kwargs["steps_per_epoch"] = min(kwargs.get("steps_per_epoch") or {QUICK_STEPS}, {QUICK_STEPS})
        return _fit(self, *args, **kwargs)

    keras.Model.fit = _quick_fit
    runpy.run_path(sys.argv[1], run_name="__main__")
    """
)


def python_blocks(path=README):
    """(first line number, code) of every ```python block in `path`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 2
        blocks.append((line, match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 7, [line for line, _ in BLOCKS]


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs_verbatim(tmp_path, line, code):
    if "import keras_hub" in code:
        pytest.importorskip("keras_hub", reason="keras-hub is an optional extra (`pip install keras-transfer[hub]`)")
    block = tmp_path / "block.py"
    block.write_text(code, encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE, str(block)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"README.md block at line {line} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
