"""Every Python block of README.md runs as written.

The blocks run verbatim, one after another, in one fresh Python process (importing TensorFlow
once, not once per block), each inside an empty folder of its own (the files it writes land
there), with Keras's global state reset between blocks (`clear_session`, float32 policy). Only
the amount of training is cut, from outside the blocks: `keras.Model.fit` is wrapped to run at
most `QUICK_EPOCHS` epochs of at most `QUICK_STEPS` steps, eagerly (tracing a train step costs more
than two steps; every model trains, exports and serves compiled in tests/reliability/test_resume.py),
so the README keeps its real settings and CI stays fast. Everything else (data, models, save, export,
printing) is the user's path.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")

QUICK_EPOCHS = 1
QUICK_STEPS = 2

# Runs the blocks given as (line, path, folder) triples in argv; one JSON line per block.
RUNNER = textwrap.dedent(
    f"""
    import json, os, runpy, sys, traceback
    import keras

    _fit = keras.Model.fit

    def _quick_fit(self, *args, **kwargs):
        kwargs["epochs"] = min(kwargs.get("epochs", 1), {QUICK_EPOCHS})
        kwargs["steps_per_epoch"] = min(kwargs.get("steps_per_epoch") or {QUICK_STEPS}, {QUICK_STEPS})
        self.run_eagerly = True  # two steps do not repay a trace
        return _fit(self, *args, **kwargs)

    keras.Model.fit = _quick_fit
    for line, path, folder in json.loads(sys.argv[1]):
        os.chdir(folder)
        keras.backend.clear_session()
        keras.config.set_dtype_policy("float32")
        try:
            runpy.run_path(path, run_name="__main__")
            error = None
        except BaseException:
            error = traceback.format_exc()
        sys.stdout.flush()
        print("\\nREADME-BLOCK " + json.dumps({{"line": line, "error": error}}), flush=True)
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


def test_every_readme_block_runs_verbatim(tmp_path):
    try:
        import keras_hub  # noqa: F401

        blocks = BLOCKS
    except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
        blocks = [(line, code) for line, code in BLOCKS if "import keras_hub" not in code]
    triples = []
    for line, code in blocks:
        folder = tmp_path / f"line{line}"
        folder.mkdir()
        (folder / "block.py").write_text(code, encoding="utf-8")
        triples.append((line, str(folder / "block.py"), str(folder)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(triples)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    reports = [
        json.loads(x[len("README-BLOCK ") :]) for x in result.stdout.splitlines() if x.startswith("README-BLOCK ")
    ]
    assert result.returncode == 0 and len(reports) == len(blocks), (
        f"the README runner stopped after {len(reports)} of {len(blocks)} blocks:\n{result.stderr[-6000:]}"
    )
    failed = [f"README.md block at line {r['line']} failed:\n{r['error'][-4000:]}" for r in reports if r["error"]]
    assert not failed, "\n\n".join(failed)
