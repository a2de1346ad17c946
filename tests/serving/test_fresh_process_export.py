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

import keras
import numpy as np

import keras_transfer as kt
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


def _images(n, size=8, channels=1, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype("float32")


def _conv_encoder(size=8, channels=1, features=6):
    return keras.Sequential([
        keras.Input((size, size, channels)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(features),
    ])


def _simclr():
    model = kt.models.SimCLR(_conv_encoder(), projection_dim=4)
    model.compile(keras.optimizers.Adam(1e-3))
    views = _images(8)
    return model, ((views, views[::-1]),), None, lambda n: _images(n, seed=1)


def _moco():
    model = kt.models.MoCo(_conv_encoder(), projection_dim=4, queue_size=16, bn_splits=1)
    model.compile(keras.optimizers.Adam(1e-3))
    views = _images(8)
    return model, ((views, views[::-1]),), None, lambda n: _images(n, seed=1)


def _rotation():
    model = kt.models.RotationPrediction(_conv_encoder())
    model.compile(keras.optimizers.Adam(1e-3))
    return model, _images(8), None, lambda n: _images(n, seed=1)


def _denoising():
    model = kt.models.DenoisingAutoencoder(_conv_encoder(), decoder_hidden_dim=8)
    model.compile(keras.optimizers.Adam(1e-3))
    return model, _images(8), None, lambda n: _images(n, seed=1)


def _masked_imputation():
    model = kt.models.MaskedImputation(_conv_encoder(), decoder_hidden_dim=8)
    model.compile(keras.optimizers.Adam(1e-3))
    return model, _images(8), None, lambda n: _images(n, seed=1)


def _classifier():
    model = kt.recipes.build_classifier("simple_cnn", 3, (16, 16, 1))
    kt.recipes.compile_for_fine_tuning(model)
    y = np.arange(8) % 3
    return model, _images(8, 16), y, lambda n: _images(n, 16, seed=1)


def _domain(cls, **kwargs):
    def build():
        features = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")])
        classifier = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        model = cls(features, classifier, **kwargs)
        model.compile(keras.optimizers.SGD(0.1))
        rng = np.random.default_rng(0)
        xs, xt = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32")
        pairs = kt.datasets.domain_pairs(xs, np.arange(8) % 3, xt, batch_size=4)
        return model, pairs, None, lambda n: np.random.default_rng(1).normal(size=(n, 4)).astype("float32")
    return build


def _clip():
    image_encoder = _conv_encoder()
    text_encoder = kt.layers.TextTransformerEncoder(20, 5, embedding_dim=8, num_heads=2)
    model = kt.models.CLIP(image_encoder, text_encoder, projection_dim=4)
    model.compile(keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)

    def inputs(n):
        return {"images": _images(n, seed=1), "token_ids": rng.integers(1, 20, (n, 5)).astype("int32")}
    return model, inputs(8), None, inputs


def _episodes(n_tasks, seed=0):
    rng = np.random.default_rng(seed)
    sx = rng.normal(size=(n_tasks, 6, 5)).astype("float32")
    sy = np.tile(np.repeat(np.arange(3), 2), (n_tasks, 1)).astype("int32")
    qx = rng.normal(size=(n_tasks, 4, 5)).astype("float32")
    qy = rng.integers(0, 3, size=(n_tasks, 4)).astype("int32")
    return (sx, sy, qx), qy


def _proto_net():
    encoder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh")])
    model = kt.models.ProtoNet(encoder, n_way=3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _episodes(4)
    return model, x, y, lambda n: _episodes(n, seed=1)[0]


def _meta_model():
    net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                            keras.layers.Dense(3)])
    model = kt.models.MetaModel(net, inner_steps=1, inner_learning_rate=0.1)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _episodes(4)
    return model, x, y, lambda n: np.random.default_rng(1).normal(size=(n, 5)).astype("float32")


def _black_box():
    model = kt.models.BlackBoxLearner(3, num_classes=3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _episodes(4)
    return model, x, y, lambda n: _episodes(n, seed=1)[0]


MODELS = {
    "classifier": _classifier,
    "SimCLR": _simclr,
    "MoCo": _moco,
    "RotationPrediction": _rotation,
    "DenoisingAutoencoder": _denoising,
    "MaskedImputation": _masked_imputation,
    "CLIP": _clip,
    "DANN": _domain(kt.models.DANN),
    "SourceOnly": _domain(kt.models.SourceOnly),
    "DeepCORAL": _domain(kt.models.DeepCORAL),
    "ProtoNet": _proto_net,
    "MetaModel": _meta_model,
    "BlackBoxLearner": _black_box,
}


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
        for name, build in MODELS.items():
            keras.utils.set_random_seed(0)
            model, fit_x, fit_y, make_inputs = build()
            model.fit(fit_x, fit_y, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
            export = os.path.join(directory, name)
            model.export(export, verbose=False)  # straight after fit
            for batch in BATCHES:
                x = make_inputs(batch)
                key = f"{name}@{batch}"
                inputs = os.path.join(directory, f"{key}_inputs.npz")
                np.savez(inputs, **_flat_inputs(x))
                expected[key] = model.predict(x, verbose=0)
                manifest.append({"name": key, "export": export, "inputs": inputs,
                                 "outputs": os.path.join(directory, f"{key}_outputs.npz")})
        manifest_path = os.path.join(directory, "manifest.json")
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run([sys.executable, "-c", LOADER, manifest_path], capture_output=True,
                                text=True, env=env, timeout=600, cwd=directory)
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
