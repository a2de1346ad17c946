"""setup.py's TensorFlow requirement: it names the TensorFlow already installed and never replaces it.

The end-to-end check (pip installing this package onto `tensorflow-cpu`) is `.ci/tensorflow_cpu.sh`;
these are the fast checks of the decision and of the probe that sees through pip's build isolation.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from unittest import mock

from packaging.requirements import Requirement

from tests.test_case import TestCase

ROOT = Path(__file__).resolve().parents[1]


def _load_setup():
    spec = importlib.util.spec_from_file_location("keras_transfer_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not "__main__": setup() is not called
    return module


class TensorflowRequirementTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_py = _load_setup()

    def assertKeeps(self, installed, name, version):
        """The requirement names the installed distribution and its version satisfies it as it is."""
        requirement = Requirement(self.setup_py.tensorflow_requirement(installed))
        self.assertEqual(requirement.name, name)
        # PEP 440's default: a pre-release satisfies the bound only if the bound allows pre-releases.
        self.assertTrue(requirement.specifier.contains(version), f"{requirement} would replace {version}")
        # Nor may another requirement (the newest tensorflow-text wants the newest TF) upgrade it through us.
        major, minor = version.split(".")[:2]
        for newer in (f"{major}.{int(minor) + 1}.0", f"{major}.{minor}.99"):
            self.assertFalse(
                requirement.specifier.contains(newer, prereleases=True),
                f"{requirement} lets pip upgrade {version} to {newer}",
            )

    def test_installed_distribution_is_named_and_satisfied(self):
        for name, version in [
            ("tensorflow-cpu", "2.20.0"),
            ("tensorflow", "2.21.0"),
            ("tensorflow", "2.23.1"),
            ("tf-nightly", "2.22.0.dev20261201"),
            ("tensorflow-cpu", "2.21.0rc1"),
            ("tensorflow-intel", "2.20.0"),
        ]:
            with self.subTest(name=name, version=version):
                self.assertKeeps([(name, version)], name, version)

    def test_fresh_environment_gets_tensorflow_within_tested_releases(self):
        requirement = Requirement(self.setup_py.tensorflow_requirement([]))
        self.assertEqual(requirement.name, "tensorflow")
        self.assertTrue(requirement.specifier.contains("2.20.0"))
        self.assertTrue(requirement.specifier.contains("2.21.0"))
        self.assertFalse(requirement.specifier.contains("2.19.1"))
        self.assertFalse(requirement.specifier.contains("2.22.0"))

    def test_older_tensorflow_stops_with_what_to_do(self):
        with self.assertRaises(SystemExit) as raised:
            self.setup_py.tensorflow_requirement([("tensorflow-cpu", "2.19.1")])
        message = str(raised.exception.code)
        for fragment in (
            "TensorFlow >= 2.20",
            "tensorflow-cpu 2.19.1",
            "pip install 'tensorflow-cpu>=2.20'",
            "fresh virtual environment",
        ):
            self.assertIn(fragment, message)

    def test_two_distributions_prefer_tensorflow(self):
        installed = [("tensorflow-cpu", "2.20.0"), ("tensorflow", "2.21.0")]
        self.assertKeeps(installed, "tensorflow", "2.21.0")

    def test_keras_hub_only_alongside_the_tensorflow_distribution(self):
        # keras-hub -> tensorflow-text -> `tensorflow` by name: on tensorflow-cpu it would install `tensorflow`.
        cases = [
            ("tensorflow-cpu", "tensorflow-cpu>=2.20", False),
            ("tensorflow", "tensorflow>=2.20", True),
            ("none", None, False),
        ]
        for value, requirement, hub in cases:
            with (
                self.subTest(KERAS_TRANSFER_TENSORFLOW=value),
                mock.patch.dict(os.environ, {"KERAS_TRANSFER_TENSORFLOW": value}),
            ):
                choice = self.setup_py.tensorflow_choice()
                self.assertEqual(choice, (requirement, hub))
                install_requires, extras = self.setup_py.requirements(*choice)
                self.assertEqual(requirement in install_requires, requirement is not None)
                self.assertEqual("keras-hub" in extras["test"], hub)
                self.assertEqual("keras-hub" in extras["hub"], hub)

    def test_fresh_environment_keeps_keras_hub_in_the_test_extra(self):
        with mock.patch.dict(os.environ), mock.patch.object(self.setup_py, "installed_tensorflow", return_value=[]):
            os.environ.pop("KERAS_TRANSFER_TENSORFLOW", None)
            choice = self.setup_py.tensorflow_choice()
        self.assertEqual(choice, (self.setup_py.TF_FRESH_INSTALL, True))
        install_requires, extras = self.setup_py.requirements(*choice)
        self.assertEqual(install_requires[0], self.setup_py.TF_FRESH_INSTALL)
        self.assertIn("keras-hub", extras["test"])


class ProbeTest(TestCase):
    """The probe runs the target interpreter and must see its site-packages through pip's isolation."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_py = _load_setup()

    def expected(self):
        """Distributions whose RECORD lists tensorflow/__init__.py, found without packages_distributions."""
        found = set()
        for dist in metadata.distributions():
            if any(str(path).replace("\\", "/") == "tensorflow/__init__.py" for path in dist.files or ()):
                found.add((dist.metadata["Name"], dist.version))
        return found

    def test_probe_sees_this_interpreters_tensorflow(self):
        expected = self.expected()
        self.assertTrue(expected, "this test runs where TensorFlow is installed")
        self.assertEqual(set(self.setup_py.probe(sys.executable)), expected)

    def test_probe_sees_through_pip_isolation(self):
        # pip's default isolation: PYTHONPATH -> a sitecustomize that drops site-packages, PYTHONNOUSERSITE=1.
        site_dir = self.get_temp_dir()
        with open(os.path.join(site_dir, "sitecustomize.py"), "w") as f:
            f.write(
                textwrap.dedent("""
                import sys
                sys.path[:] = [p for p in sys.path if "site-packages" not in p and "dist-packages" not in p]
            """)
            )
        isolated = {"PYTHONPATH": site_dir, "PYTHONNOUSERSITE": "1"}
        with mock.patch.dict(os.environ, isolated):
            hidden = subprocess.run(
                [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is None)"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            self.assertEqual(hidden, "True", "the simulated isolation hides TensorFlow from a plain subprocess")
            self.assertEqual(set(self.setup_py.probe(sys.executable)), self.expected())

    def test_build_venv_falls_back_to_the_parent_pythons_environment(self):
        # pip --use-feature venv-isolation, python -m build: sys.executable is a throwaway venv whose python,
        # like the target venv's, is a symlink to the same base interpreter.
        target = os.path.join(self.get_temp_dir(), "python")
        os.symlink(os.path.realpath(sys.executable), target)
        seen = {sys.executable: [], target: [("tensorflow-cpu", "2.20.0")]}
        with (
            mock.patch.object(self.setup_py, "parent_python", return_value=target),
            mock.patch.object(self.setup_py, "probe", side_effect=seen.get),
        ):
            self.assertEqual(self.setup_py.installed_tensorflow(), [("tensorflow-cpu", "2.20.0")])

    def test_probe_of_a_missing_interpreter_is_none(self):
        self.assertIsNone(self.setup_py.probe(os.path.join(self.get_temp_dir(), "no-python")))
