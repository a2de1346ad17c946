"""Every script in examples/ runs as a user runs it, and opens as a notebook.

The examples run as `python examples/<name>.py` does (`runpy` with `__name__ == "__main__"`), one
after another in one fresh Python process (importing TensorFlow once, not once per example), each
inside an empty folder of its own (also its TMPDIR) with Keras's global state reset in between, and
with `KERAS_TRANSFER_QUICK=1`: the example itself reads it and shrinks its defaults (epochs, steps,
sizes), so the file keeps its real settings and CI stays fast. Each must finish (or exit 0) with no
traceback, and the process must show no Python warning from an example or from keras_transfer;
`-W default` shows the warnings Python hides by default, and `KERAS_TRANSFER_OFFLINE=1` makes any
download fail. What each prints (accuracies, errors) is parsed and checked, and the files it says it
wrote must exist.

The examples are Jupytext "percent" scripts: `# %% [markdown]` cells explain each step, `# %%`
cells hold the code. The tests read the cells the way Jupytext does and run the first ones as a
notebook kernel would (its own `-f kernel.json` arguments in `sys.argv`).
"""

import argparse
import glob
import json
import os
import re
import runpy
import subprocess
import sys
import tempfile
import textwrap
import types

import pytest

import keras_transfer

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
EXAMPLES = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(EXAMPLES_DIR, "*.py")))
PACKAGE_DIR = os.path.dirname(os.path.abspath(keras_transfer.__file__))

# Python's warning format: "path:line: Category: message".
WARNING_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<category>\w*Warning): (?P<message>.*)$", re.M)
NUMBER = r"(-?\d+\.\d+)"


def _path(name):
    return os.path.join(EXAMPLES_DIR, f"{name}.py")


def cells(name):
    """[(kind, lines)] of a percent-format script, kind "markdown" or "code", as Jupytext splits it."""
    with open(_path(name), encoding="utf-8") as f:
        lines = f.read().splitlines()
    result = []
    for line in lines:
        if line.startswith("# %%"):
            result.append(("markdown" if "[markdown]" in line else "code", []))
        elif result:
            result[-1][1].append(line)
        else:
            result.append(("preamble", [line]))
    return result


def _code(lines):
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ running the scripts


# Runs the examples given as (name, path, folder) triples in argv, each as `python <path>` would; a marker
# line on stdout and on stderr after each (JSON: name, traceback or None).
RUNNER = textwrap.dedent(
    """
    import json, os, runpy, sys, tempfile, traceback
    import keras

    for name, path, folder in json.loads(sys.argv[1]):
        os.chdir(folder)
        os.environ["TMPDIR"] = tempfile.tempdir = folder
        sys.argv = [path]
        keras.backend.clear_session()
        keras.config.set_dtype_policy("float32")
        error = None
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                error = f"exit status {exit_.code!r}"
        except BaseException:
            error = traceback.format_exc()
        marker = "EXAMPLE-END " + json.dumps({"name": name, "error": error})
        print("\\n" + marker, flush=True)
        print("\\n" + marker, file=sys.stderr, flush=True)
    """
)


def _split(output):
    """{name: (text before its marker, error)} of the runner's stdout or stderr."""
    parts, start = {}, 0
    for match in re.finditer(r"^EXAMPLE-END (.*)$", output, re.M):
        report = json.loads(match[1])
        parts[report["name"]] = (output[start : match.start()], report["error"])
        start = match.end()
    return parts


def _run_all(names, tmp_path):
    """Runs `names` in one fresh process; returns (process, {name: (stdout, stderr, error, folder)})."""
    triples = []
    for name in names:
        folder = tmp_path / name
        folder.mkdir()
        triples.append((name, _path(name), str(folder)))
    env = dict(os.environ, KERAS_TRANSFER_QUICK="1", KERAS_TRANSFER_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["KERAS_BACKEND"] = "tensorflow"
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", RUNNER, json.dumps(triples)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600 * len(names),
    )
    out, err = _split(result.stdout), _split(result.stderr)
    runs = {
        name: (out[name][0], err.get(name, ("", None))[0], out[name][1], tmp_path / name)
        for name in names
        if name in out
    }
    return result, runs


def _ours(path):
    path = os.path.realpath(path)
    return any(path.startswith(os.path.realpath(folder) + os.sep) for folder in (PACKAGE_DIR, EXAMPLES_DIR))


def our_warnings(output):
    """Warning lines caused by keras_transfer or the example.

    Any warning a user sees by default counts, wherever Python attributes it (Keras's "shuffle=True
    was passed, but will be ignored" points into Keras, but the call came from us). Deprecation
    warnings, hidden from users by default, count when they point into our files; those inside
    TensorFlow/Keras/NumPy (NumPy 2's `__array__` copy keyword from Keras's `convert_to_numpy`)
    are not ours to fix.
    """
    found = []
    for match in WARNING_LINE.finditer(output):
        deprecation = match["category"] in ("DeprecationWarning", "PendingDeprecationWarning")
        if not deprecation or _ours(match["path"]):
            found.append(match.group(0))
    return found


def _check_clip_zero_shot(out, folder):
    accuracy = float(re.search(rf"zero-shot accuracy \(held-out prompts, ensembled\): {NUMBER}", out)[1])
    curve = {float(a): float(v) for a, v in re.findall(rf"WiSE-FT alpha={NUMBER}: test accuracy {NUMBER}", out)}
    assert sorted(curve) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve[0.0] == accuracy  # alpha 0 is the zero-shot classifier itself
    assert all(0.0 <= v <= 1.0 for v in [accuracy, *curve.values()])
    return ["clip_output/zero_shot.keras", "clip_output/zero_shot_savedmodel/saved_model.pb"]


def _check_few_shot_digits(out, folder):
    rows = re.findall(rf"^(\S+)\s+5-way 1-shot accuracy on classes 5-9: {NUMBER} ± {NUMBER}$", out, re.M)
    assert [row[0] for row in rows] == ["ProtoNet", "MAML", "black-box"]
    for _, mean, half in rows:
        assert 0.0 <= float(mean) <= 1.0 and 0.0 < float(half) < 0.5
    return []


def _check_fine_tune_digits(out, folder):
    rows = dict(re.findall(rf"^(linear probe|LP-FT, [^\n]*?)\s+{NUMBER}$", out, re.M))
    assert list(rows) == [
        "linear probe",
        "LP-FT, first blocks only",
        "LP-FT, last blocks only",
        "LP-FT, all blocks, layer-wise decay",
    ]
    assert all(0.0 <= float(v) <= 1.0 for v in rows.values())
    return ["fine_tuned_digits.keras", "fine_tuned_digits_savedmodel/saved_model.pb"]


def _check_finetune_image_folder(out, folder):
    assert "Classes: " + ", ".join(f"digit{i}" for i in range(10)) in out
    accuracy = float(re.search(rf"^validation: accuracy {NUMBER}, loss {NUMBER}$", out, re.M)[1])
    assert 0.0 <= accuracy <= 1.0
    with open(os.path.join(folder, "exported_model", "class_names.txt"), encoding="utf-8") as f:
        assert f.read().split() == [f"digit{i}" for i in range(10)]
    # The temporary image folder is gone once the script has exited.
    assert not glob.glob(os.path.join(folder, "keras_transfer_digits_*"))
    return ["model.keras", "exported_model/saved_model.pb"]


def _check_meta_learning_sinusoid(out, folder):
    mse = {int(s): float(v) for s, v in re.findall(rf"query MSE after\s+(\d+) step\(s\) on K=5 points: {NUMBER}", out)}
    assert sorted(mse) == [1, 5, 10]
    assert all(0.0 < v < 100.0 for v in mse.values())
    return [f"maml_sinusoid/{f}" for f in ("meta_model.keras", "task0.keras", "task0_savedmodel/saved_model.pb")]


CHECKS = {name[len("_check_") :]: check for name, check in globals().items() if name.startswith("_check_")}


def test_every_example_has_a_check():
    assert EXAMPLES and sorted(CHECKS) == EXAMPLES


def test_every_example_runs_quick(tmp_path):
    result, runs = _run_all(EXAMPLES, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and sorted(runs) == EXAMPLES, (
        f"the examples runner stopped after {sorted(runs)}:\n{result.stderr[-6000:]}"
    )
    assert our_warnings(output) == [], output[-6000:]
    for name in EXAMPLES:
        stdout, stderr, error, folder = runs[name]
        assert error is None, f"examples/{name}.py failed:\n{stdout[-3000:]}\n{stderr[-3000:]}\n{error[-6000:]}"
        assert "Traceback" not in stdout + stderr, (name, (stdout + stderr)[-6000:])
        for written in CHECKS[name](stdout, str(folder)):
            assert os.path.exists(folder / written), (name, written, sorted(os.listdir(folder)))
    assert "Traceback" not in output, output[-6000:]  # also after the last example (exit-time cleanup)


def test_our_warnings_filter():
    keras_file = "/venv/lib/python3.11/site-packages/keras/src/trainers/epoch_iterator.py"
    ours = os.path.join(PACKAGE_DIR, "models", "clip.py")
    output = "\n".join(
        [
            f"{keras_file}:74: UserWarning: `shuffle=True` was passed, but will be ignored",
            f"{keras_file}:172: DeprecationWarning: __array__ implementation doesn't accept a copy keyword",
            f"{ours}:10: DeprecationWarning: something of ours",
            "/usr/lib/python3.11/tempfile.py:895: ResourceWarning: Implicitly cleaning up <TemporaryDirectory>",
        ]
    )
    assert [line.split(": ")[1] for line in our_warnings(output)] == [
        "UserWarning",
        "DeprecationWarning",
        "ResourceWarning",
    ]


# ------------------------------------------------------------- finetune_image_folder's outputs


def _run_in_process(monkeypatch, capsys, tmp_path, name, *args):
    """Runs an example in this process (no TensorFlow start-up); returns (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_TRANSFER_QUICK", "1")
    monkeypatch.setenv("KERAS_TRANSFER_OFFLINE", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [_path(name), *args])
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    code = 0
    try:
        runpy.run_path(_path(name), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_finetune_image_folder_keeps_an_existing_model_file(monkeypatch, capsys, tmp_path):
    (tmp_path / "model.keras").write_bytes(b"the user's own model")
    code, err = _run_in_process(monkeypatch, capsys, tmp_path, "finetune_image_folder")
    assert code == 2
    assert "error: `save` must not be an existing file" in err and "--overwrite" in err, err
    assert (tmp_path / "model.keras").read_bytes() == b"the user's own model"
    assert not (tmp_path / "exported_model").exists()


def test_finetune_image_folder_overwrite_never_replaces_a_folder_of_other_files(monkeypatch, capsys, tmp_path):
    (tmp_path / "exported_model").mkdir()
    (tmp_path / "exported_model" / "notes.txt").write_text("mine")
    code, err = _run_in_process(monkeypatch, capsys, tmp_path, "finetune_image_folder", "--overwrite")
    assert code == 2
    assert "no saved_model.pb" in err and "Nothing was deleted" in err, err
    assert os.listdir(tmp_path / "exported_model") == ["notes.txt"]
    assert not (tmp_path / "model.keras").exists()


def test_finetune_image_folder_missing_data_folder(monkeypatch, capsys, tmp_path):
    code, err = _run_in_process(monkeypatch, capsys, tmp_path, "finetune_image_folder", "no_such_folder")
    assert code == 2
    assert "error: `data` must be an existing folder. Received: data='no_such_folder'" in err, err


# ----------------------------------------------------------------------- the notebook cells


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_is_a_percent_notebook(name):
    parts = cells(name)
    kinds = [kind for kind, _ in parts]
    # Starts with a markdown title (no code before the first cell marker) ...
    assert kinds[0] == "markdown" and parts[0][1][0].startswith("# # "), parts[0]
    # ... and every code cell follows a markdown cell explaining it.
    assert kinds == ["markdown", "code"] * (len(kinds) // 2), kinds
    assert len(kinds) >= 8, kinds
    for kind, lines in parts:
        if kind == "markdown":
            assert all(line == "#" or line.startswith("# ") or not line for line in lines), lines
        else:
            compile(_code(lines), f"{name}.py", "exec")
            assert any(line.strip() and not line.startswith("#") for line in lines), lines
    # What a script runs is what the notebook runs: no `if __name__ == "__main__":` hiding the steps.
    assert "__main__" not in "".join(_code(lines) for _, lines in parts)


KERNEL_ARGV = [
    "/venv/lib/python3.12/site-packages/ipykernel_launcher.py",
    "-f",
    "/root/.local/share/jupyter/runtime/kernel-1.json",
]


def _settings(name, quick, monkeypatch, argv=KERNEL_ARGV):
    """The `args` of an example's first cells, run as a notebook kernel runs them (its `argv`)."""
    if quick:
        monkeypatch.setenv("KERAS_TRANSFER_QUICK", "1")
    else:
        monkeypatch.delenv("KERAS_TRANSFER_QUICK", raising=False)
    monkeypatch.setattr(sys, "argv", list(argv))
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    namespace = {"__name__": "__main__"}
    for kind, lines in cells(name):
        if kind == "code":
            exec(compile(_code(lines), f"{name}.py", "exec"), namespace)
            if "args" in namespace:
                return namespace["args"]
    raise AssertionError(f"examples/{name}.py defines no `args` in its cells")


# The real settings, kept when KERAS_TRANSFER_QUICK is not set.
FULL_SETTINGS = {
    "clip_zero_shot": {"epochs": 25, "fine_tune_epochs": 20},
    "few_shot_digits": {"iterations": 500, "test_episodes": 600},
    "fine_tune_digits": {"epochs": 20},
    "finetune_image_folder": {"epochs": 5, "backbone": "mobilenet_v3_small", "data": None},
    "meta_learning_sinusoid": {"iterations": 10000},
}


def test_every_example_has_full_settings():
    assert sorted(FULL_SETTINGS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_notebook_settings_ignore_kernel_arguments(name, monkeypatch):
    full = _settings(name, quick=False, monkeypatch=monkeypatch)
    quick = _settings(name, quick=True, monkeypatch=monkeypatch)
    assert isinstance(full, argparse.Namespace)
    assert {k: getattr(full, k) for k in FULL_SETTINGS[name]} == FULL_SETTINGS[name]
    shrunk = {k for k in vars(full) if getattr(full, k) != getattr(quick, k)}
    assert shrunk & set(FULL_SETTINGS[name]), "KERAS_TRANSFER_QUICK=1 changes none of the real settings"


@pytest.mark.parametrize("name", EXAMPLES)
def test_percent_run_in_a_notebook_passes_arguments(name, monkeypatch):
    # IPython's `%run examples/<name>.py --epochs 3` sets sys.argv to the script and its arguments.
    option = "iterations" if name in ("few_shot_digits", "meta_learning_sinusoid") else "epochs"
    args = _settings(name, quick=True, monkeypatch=monkeypatch, argv=[_path(name), f"--{option}", "3"])
    assert getattr(args, option) == 3
