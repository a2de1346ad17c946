"""Build script: everything static lives in setup.cfg; this file only chooses the TensorFlow requirement.

Why the TensorFlow requirement is computed here
------------------------------------------------
TensorFlow ships the same `tensorflow` module under several distribution names: `tensorflow` (also
`tensorflow[and-cuda]`), `tensorflow-cpu`, `tf-nightly`, `tf-nightly-cpu`, and formerly `tensorflow-gpu`,
`tensorflow-intel`, `tensorflow-macos`. pip knows nothing of this: a package that requires `tensorflow` on
an environment that has `tensorflow-cpu` makes pip install `tensorflow` on top, both write the same files,
`pip check` sees nothing wrong and `import tensorflow` fails (undefined symbol). Static metadata cannot
say "any of these distributions", and the README promises that `pip install .` on a fresh machine installs
TensorFlow. So the requirement names the distribution that already provides `tensorflow` in the
environment being installed into, and `tensorflow` only when there is none:

- a TensorFlow already there, >= 2.20: `<that distribution>==<its version>`. A lower bound alone is not
  enough: pip would still upgrade TensorFlow for another requirement, e.g. the newest tensorflow-text
  (pulled by keras-hub in the `test` extra) requires the newest `tensorflow`. Pinned, pip picks the
  companions that fit the TensorFlow already there (an image's newer TensorFlow is kept as well). If the
  user later upgrades TensorFlow, pip warns that keras-transfer asked for the old one; reinstalling
  keras-transfer records the new one;
- a TensorFlow already there, older than 2.20: the install stops with a message saying what to do, rather
  than pip silently replacing the TensorFlow an image was built around;
- none (a fresh machine): `tensorflow>=2.20,<2.22`, the releases this project's CI tests.

What the TensorFlow ecosystem does, and why not that:
- tensorflow-probability and tensorflow-datasets declare no TensorFlow requirement at all (datasets offers
  a `tensorflow` extra) and check at import time: that never breaks an image, but `pip install .` on a
  fresh machine would then not install TensorFlow, against the README.
- tensorflow-text and tf-keras require `tensorflow` by name (`tensorflow<2.22,>=2.21.0`): exactly the
  defect above for `tensorflow-cpu` users (open upstream: tensorflow/text#1393, #195; keras-hub#2101).
- a `tensorflow-cpu`/`tensorflow` extra pair (as tensorflow-text's own `[tensorflow-cpu]` extra) still
  needs the user to know which one to pick, and the plain command would still pull `tensorflow`.

keras-hub (extras `hub` and `test`) requires tensorflow-text on Linux and macOS, which requires
`tensorflow` by name: on an environment whose TensorFlow is another distribution it would bring the same
breakage, so those extras leave keras-hub out there (its two tests then skip, saying keras-hub is absent).

Where the target environment is seen from. pip builds in an isolated environment: with its default
isolation `sys.executable` is the target interpreter, but PYTHONPATH points at a sitecustomize that hides
the target's site-packages and PYTHONNOUSERSITE hides the user site, so the probe runs that interpreter
with `-E` (ignore PYTHON* variables) in a subprocess. With pip's `--use-feature venv-isolation`, or
`python -m build`, `sys.executable` is a throwaway venv: then (Linux) the parent process's interpreter,
which is pip's own, is probed too. uv builds in a venv of its own whose parent is uv itself: nothing can be
probed there, so set the variable below. `--target`/`--prefix` installs are not seen either.

KERAS_TRANSFER_TENSORFLOW=<distribution> skips the probe and requires that distribution (>= 2.20);
KERAS_TRANSFER_TENSORFLOW=none requires no TensorFlow at all (an environment managed by hand).

Caveat: a wheel built with this file records the TensorFlow of the machine that built it. pip never
caches wheels it builds from a local folder (`pip install .`); a wheel or sdist published for others must
be built with KERAS_TRANSFER_TENSORFLOW=tensorflow.
"""

import json
import os
import re
import shutil
import subprocess
import sys

TF_MINIMUM = (2, 20)
TF_FRESH_INSTALL = "tensorflow>=2.20,<2.22"  # the newest minor release CI tests is 2.21
ENV_OVERRIDE = "KERAS_TRANSFER_TENSORFLOW"
# When several distributions provide `tensorflow` (an environment already broken the way this file
# prevents), the first of these found is named; pip leaves all of them in place.
PREFERENCE = ("tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu")

# Runs in the target interpreter: (name, version) of each distribution whose files provide `tensorflow`.
# `packages_distributions` reads metadata only (Python >= 3.10): TensorFlow is not imported.
_PROBE = (
    "import json\n"
    "from importlib import metadata\n"
    "names = set(metadata.packages_distributions().get('tensorflow', []))\n"
    "print(json.dumps(sorted((metadata.metadata(n)['Name'], metadata.version(n)) for n in names)))\n"
)


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _major_minor(version):
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def probe(python):
    """[(distribution, version)] providing `tensorflow` in `python`'s environment, or None if it can't run."""
    try:
        result = subprocess.run(
            [python, "-E", "-c", _PROBE], capture_output=True, text=True, timeout=120, cwd=os.path.abspath(os.sep)
        )
        return [tuple(pair) for pair in json.loads(result.stdout)] if result.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def parent_python():
    """The interpreter running the process that runs this build (pip's own), on Linux; else None."""
    pid = os.getppid()
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode()
        if not os.path.isabs(argv0):
            if os.sep in argv0:
                argv0 = os.path.join(os.readlink(f"/proc/{pid}/cwd"), argv0)
            else:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(e.split("=", 1) for e in f.read().decode(errors="replace").split("\0") if "=" in e)
                argv0 = shutil.which(argv0, path=env.get("PATH", os.defpath)) or ""
    except (OSError, UnicodeDecodeError):
        return None
    return argv0 if "python" in os.path.basename(argv0) and os.path.exists(argv0) else None


def installed_tensorflow():
    """[(distribution, version)] providing `tensorflow` where this package is being installed."""
    found = probe(sys.executable)
    if not found:
        parent = parent_python()
        # Compared unresolved: a venv's python is a symlink to the same base interpreter as the build venv's.
        if parent and parent != sys.executable:
            found = probe(parent) or found
    return found or []


def tensorflow_requirement(installed):
    """The TensorFlow requirement for an environment where `installed` provide `tensorflow`.

    Args:
        installed: list of `(distribution, version)` pairs, empty on a fresh environment.

    Returns:
        A requirement string pinning the installed distribution to its version (`tensorflow` within the
        tested releases when there is none).

    Raises:
        SystemExit: the installed TensorFlow is older than supported, with what to do.
    """
    if not installed:
        return TF_FRESH_INSTALL
    rank = {name: i for i, name in enumerate(PREFERENCE)}
    name, version = min(installed, key=lambda pair: (rank.get(_normalize(pair[0]), len(rank)), pair[0]))
    minimum = ".".join(map(str, TF_MINIMUM))
    if _major_minor(version) < TF_MINIMUM:
        raise SystemExit(
            f"keras-transfer needs TensorFlow >= {minimum}; this environment has {name} {version}. "
            f"It is left as it is rather than replaced: upgrade it yourself "
            f"(pip install '{name}>={minimum}') or install keras-transfer into a fresh virtual environment."
        )
    return f"{name}=={version}"


def tensorflow_choice():
    """(requirement or None, whether keras-hub may be required) for the target environment."""
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override.lower() == "none":
        return None, False
    if override:
        requirement = f"{override}>={'.'.join(map(str, TF_MINIMUM))}"
    else:
        installed = installed_tensorflow()
        if not installed and os.environ.get("UV"):
            print(
                f"keras-transfer: uv builds in its own environment, so the target's TensorFlow cannot be "
                f"seen; requiring `tensorflow`. If the target has another TensorFlow distribution, set "
                f"{ENV_OVERRIDE}=<its name>.",
                file=sys.stderr,
            )
        requirement = tensorflow_requirement(installed)
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return requirement, _normalize(name) == "tensorflow"


def requirements(tf_requirement, keras_hub_allowed):
    """install_requires and extras_require for the chosen TensorFlow requirement."""
    install_requires = [
        "keras>=3.13",
        "tensorflow-datasets",
        "importlib_resources",
        "scikit-learn",
        "threadpoolctl",
        "Pillow",
        "matplotlib",
    ]
    if tf_requirement:
        install_requires.insert(0, tf_requirement)
    hub = ["keras-hub"] if keras_hub_allowed else []
    # ruff: the lint that tests/test_lint.py runs (minor release pinned: new releases add rules).
    extras = {"cv": ["keras-cv"], "hub": hub, "test": ["pytest", "pytest-xdist", "ruff>=0.17,<0.18"] + hub}
    return install_requires, extras


if __name__ == "__main__":
    from setuptools import setup  # imported here so that tests can import this file without setuptools

    install_requires, extras_require = requirements(*tensorflow_choice())
    setup(install_requires=install_requires, extras_require=extras_require)
