"""Every model's export, loaded where TF Serving loads it: a process without keras_transfer.

Each model is built, trained for one step with `fit` and exported straight away
(nothing called in between), as users do. One fresh Python process, which imports
TensorFlow and NumPy only, loads every export and calls its `serving_default`
signature at batch sizes 1 and 7 with the dtypes a client sends (float32 pixels and
features, int32 token ids and labels); the answers must equal `predict`.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from tests import model_zoo
from tests.test_case import TestCase

BATCHES = (1, 7)

# Runs in the fresh process: no keras_transfer, and it checks that nothing imported it.
LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    manifest = json.load(open(sys.argv[1]))
    for entry in manifest:
        signature = tf.saved_model.load(entry["export"]).signatures["serving_default"]
        inputs = np.load(entry["inputs"])
        names = sorted(signature.structured_input_signature[1])
        if len(names) != len(inputs.files):
            raise SystemExit(f"{entry['name']}: signature inputs {names}, sent {inputs.files}")
        feed = {}
        for name in names:
            key = name if name in inputs.files else inputs.files[names.index(name)]
            feed[name] = tf.constant(inputs[key])
        outputs = signature(**feed)
        np.savez(entry["outputs"], **{k: v.numpy() for k, v in outputs.items()})
    assert "keras_transfer" not in sys.modules, "the loader imported keras_transfer"
    print("loaded", len(manifest))
    """
)


def _flat_inputs(x):
    """The named arrays a client sends: dict keys, or the call's positional names."""
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, (tuple, list)):
        return {f"input_{i}": v for i, v in enumerate(x)}
    return {"input_0": x}


class FreshProcessExportTest(TestCase):
    def test_every_model_serves_as_predict_in_a_process_without_keras_transfer(self):
        directory = self.get_temp_dir()
        manifest, expected = [], {}
        for name in model_zoo.NAMES:
            entry = model_zoo.build(name)
            model = entry.model
            model_zoo.fit(entry, steps_per_epoch=1)
            export = os.path.join(directory, name)
            model.export(export, verbose=False)  # straight after fit
            for batch in BATCHES:
                x = entry.inputs(batch)
                key = f"{name}@{batch}"
                inputs = os.path.join(directory, f"{key}_inputs.npz")
                np.savez(inputs, **_flat_inputs(x))
                expected[key] = model.predict(x, verbose=0)
                manifest.append(
                    {
                        "name": key,
                        "export": export,
                        "inputs": inputs,
                        "outputs": os.path.join(directory, f"{key}_outputs.npz"),
                    }
                )
        manifest_path = os.path.join(directory, "manifest.json")
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run(
            [sys.executable, "-c", LOADER, manifest_path],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            cwd=directory,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-4000:])
        for entry in manifest:
            outputs = np.load(entry["outputs"])
            want = expected[entry["name"]]
            if isinstance(want, dict):
                self.assertEqual(sorted(outputs.files), sorted(want), entry["name"])
                for k in want:
                    self.assertAllClose(outputs[k], want[k], atol=1e-5, msg=f"{entry['name']} {k}")
            else:
                self.assertLen(outputs.files, 1)
                self.assertAllClose(outputs[outputs.files[0]], want, atol=1e-5, msg=entry["name"])
