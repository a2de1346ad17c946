import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.losses import clip_loss
from keras_transfer.models import CLIP
from tests.losses.test_clip_loss import numpy_clip_loss
from tests.models._terminate_on_nan import assert_terminates_on_nan
from tests.test_case import TestCase
from tests.test_case import run_probe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_clip(**kwargs):
    image_encoder = keras.Sequential(
        [keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D()],
        name="image_encoder",
    )
    text_encoder = TextTransformerEncoder(12, 5, embedding_dim=8, num_layers=1, num_heads=2)
    kwargs.setdefault("projection_dim", 6)
    return CLIP(image_encoder, text_encoder, **kwargs)


def make_data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, 6, 6, 1)).astype("float32")
    tokens = rng.integers(1, 12, size=(n, 5)).astype("int32")
    tokens[:, 4] = 0  # some padding
    return {"images": images, "token_ids": tokens}


def check_mirrored_probe(test, common=None, mirrored_only=None):
    """Runs `_clip_distributed_probe.py` with these `CLIP` arguments and checks its result."""
    out = run_probe(
        os.path.join(ROOT, "tests", "models", "_clip_distributed_probe.py"),
        json.dumps(common or {}),
        json.dumps(mirrored_only or {}),
    )
    test.assertEqual(out["replicas"], 2)
    test.assertLess(out["max_weight_difference"], 2e-5)
    test.assertGreater(out["median_weight_movement"], 1e-3)
    for key in ("loss", "image_to_text_accuracy", "text_to_image_accuracy"):
        test.assertAlmostEqual(out["mirrored"][key], out["single"][key], places=5)
    test.assertAlmostEqual(out["clamped_scale"], 100.0, places=3)
    return out


class CLIPTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(1)
        cls.data = make_data()
        cls.model = build_clip()
        cls.model.compile(optimizer=keras.optimizers.Adam(1e-2))
        cls.model(cls.data)

    def test_logit_scale_initialisation_and_config(self):
        model = build_clip()
        self.assertAllClose(model.log_logit_scale, math.log(1 / 0.07), atol=1e-6)
        self.assertEqual(keras.backend.standardize_dtype(model.log_logit_scale.dtype), "float32")
        self.assertAlmostEqual(model.get_logit_scale(), 1 / 0.07, places=4)
        config = model.get_config()
        self.assertEqual(config["projection_dim"], 6)
        self.assertEqual(config["max_logit_scale"], 100.0)

    def test_logit_scale_is_the_multiplier_and_the_variable_its_log(self):
        model = build_clip(logit_scale_init=20.0)
        self.assertTrue(model.log_logit_scale.path.endswith("/log_logit_scale"), model.log_logit_scale.path)
        self.assertAllClose(model.log_logit_scale, math.log(20.0), atol=1e-6)
        # `model.logit_scale` is what clip_loss takes: passing it gives the model's own loss.
        self.assertAllClose(model.logit_scale, 20.0, atol=1e-4)
        self.assertAlmostEqual(model.get_logit_scale(), 20.0, places=4)
        out = model.predict(self.data, verbose=0)
        model.compile(optimizer="sgd")
        logs = model.evaluate(self.data, batch_size=8, verbose=0, return_dict=True)
        self.assertAllClose(
            clip_loss(out["image_embeddings"], out["text_embeddings"], model.logit_scale),
            numpy_clip_loss(out["image_embeddings"], out["text_embeddings"], 20.0).mean(),
            atol=1e-5,
        )
        self.assertAllClose(
            logs["loss"], clip_loss(out["image_embeddings"], out["text_embeddings"], model.logit_scale), atol=1e-5
        )
        # The log-scale variable itself is refused by clip_loss.
        self.assertRaisesValueError(
            "not its log", clip_loss, out["image_embeddings"], out["text_embeddings"], model.log_logit_scale
        )
        # It is read-only: the log scale is changed through `log_logit_scale`.
        with self.assertRaises(AttributeError):
            model.logit_scale = 3.0
        with self.assertRaises(AttributeError):
            model.logit_scale.assign(3.0)

    def test_keras_file_saved_before_the_rename_loads(self):
        # Saved by the version whose variable was called `logit_scale` (set to ln 20).
        path = os.path.join(ROOT, "tests", "models", "data", "clip_saved_before_log_logit_scale_rename.keras")
        model = keras.saving.load_model(path)
        self.assertAlmostEqual(model.get_logit_scale(), 20.0, places=4)
        self.assertAllClose(model.log_logit_scale, math.log(20.0), atol=1e-6)
        out = model.predict(self.data, verbose=0)
        self.assertAllClose(np.linalg.norm(out["image_embeddings"], axis=1), np.ones(8), atol=1e-5)
        # And a file saved now round-trips the renamed variable.
        model.log_logit_scale.assign(math.log(30.0))
        reloaded = self.run_serialization_test(model, self.data)
        self.assertAlmostEqual(reloaded.get_logit_scale(), 30.0, places=3)

    def test_fit_alone_saves_reloads_and_exports_int32_token_ids(self):
        # A model trained by `fit` alone (never called) saves, reloads and exports straight away;
        # export straight after fit is checked in a fresh process by the model zoo
        # (tests/reliability/test_resume.py).
        model = build_clip()
        model.compile(optimizer="adam")
        model.fit(self.data, batch_size=4, epochs=1, verbose=0)
        self.assertTrue(model.built)
        self.assertEqual(self.data["token_ids"].dtype, np.int32)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        path = os.path.join(self.get_temp_dir(), "exported")
        reloaded.export(path, verbose=False)
        self.assertExportMatchesPredict(path, reloaded, self.data)
        self.assertEqual(reloaded.projection_dim, 6)
        self.assertEqual(reloaded.get_config().keys(), model.get_config().keys())
        for a, b in zip(model.weights, reloaded.weights, strict=True):
            self.assertAllClose(b, a, atol=0, rtol=0, msg=a.path)
        expected = model.predict(self.data, verbose=0)
        for key, value in reloaded.predict(self.data, verbose=0).items():
            self.assertAllClose(value, expected[key], msg=key)
        _, specs = tf.saved_model.load(path).signatures["serving_default"].structured_input_signature
        self.assertEqual(specs["token_ids"].dtype, tf.int32)
        self.assertEqual(specs["images"].dtype, tf.float32)
        self.assertEqual(tuple(specs["images"].shape), (None, 6, 6, 1))
        # Towers without a declared Input, never called: the shapes are unknown.
        unknown = CLIP(keras.layers.Dense(4), TextTransformerEncoder(12, 5, 8, 1, 2), projection_dim=6)
        self.assertRaisesValueError(
            ["`CLIP.export()` needs the input shapes", "input_signature"],
            unknown.export,
            os.path.join(self.get_temp_dir(), "x"),
        )

    def test_terminate_on_nan_and_no_finite_metric_with_nan_weights(self):
        # Divergence: a huge learning rate.
        model = build_clip()
        model.compile(optimizer=keras.optimizers.SGD(1e30))
        assert_terminates_on_nan(self, model, make_data(32), batch_size=8)
        # NaN logits give NaN accuracies (argmax of NaN would be a valid index).
        model = build_clip()
        model(self.data)
        model.compile(optimizer="sgd")
        model.image_projection.kernel.assign(np.full((4, 6), np.nan, "float32"))
        logs = model.evaluate(self.data, batch_size=8, verbose=0, return_dict=True)
        for name, value in logs.items():
            self.assertTrue(np.isnan(value), f"{name}={value} with NaN weights")
        # NaN inputs stop at batch 0 with an error naming them (arrays and datasets: test_bad_data).

    def test_embeddings_are_projected_unit_vectors(self):
        model = self.model
        out = model.predict(self.data, verbose=0)
        features = model.image_encoder.predict(self.data["images"], verbose=0)
        expected = features @ model.image_projection.kernel.numpy()
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        self.assertAllClose(out["image_embeddings"], expected, atol=1e-5)
        self.assertAllClose(np.linalg.norm(out["text_embeddings"], axis=1), np.ones(8), atol=1e-5)
        self.assertAllClose(model.encode_images(self.data["images"], batch_size=3), expected, atol=1e-5)
        self.assertAllClose(model.encode_text(self.data["token_ids"], batch_size=3), out["text_embeddings"], atol=1e-5)

    def test_evaluate_matches_numpy_loss_and_accuracies(self):
        model = self.model
        out = model.predict(self.data, verbose=0)
        scale = model.get_logit_scale()
        logs = model.evaluate(self.data, batch_size=8, verbose=0, return_dict=True)
        image, text = out["image_embeddings"], out["text_embeddings"]
        self.assertAllClose(logs["loss"], numpy_clip_loss(image, text, scale).mean(), atol=1e-5)
        logits = scale * image @ text.T
        self.assertAllClose(logs["image_to_text_accuracy"], np.mean(logits.argmax(1) == np.arange(8)))
        self.assertAllClose(logs["text_to_image_accuracy"], np.mean(logits.argmax(0) == np.arange(8)))
        self.assertAllClose(logs["logit_scale"], scale, atol=1e-4)

    def test_train_step_gradient_of_logit_scale_matches_finite_differences(self):
        keras.utils.set_random_seed(2)
        model = build_clip()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        out = model.predict(self.data, verbose=0)
        image, text = out["image_embeddings"].astype("float64"), out["text_embeddings"].astype("float64")
        s0 = float(model.log_logit_scale.numpy())
        eps = 1e-4
        numeric = (
            numpy_clip_loss(image, text, math.exp(s0 + eps), False).mean()
            - numpy_clip_loss(image, text, math.exp(s0 - eps), False).mean()
        ) / (2 * eps)
        model.fit(self.data, batch_size=8, epochs=1, verbose=0, shuffle=False)
        self.assertAllClose(float(model.log_logit_scale.numpy()), s0 - 0.1 * numeric, atol=1e-5)

    def test_fit_tuple_and_two_array_forms(self):
        model = build_clip()
        model.compile(optimizer="adam")
        model(self.data)
        history = self.run_fit_test(model, self.data, batch_size=8, steps=2)
        self.assertEqual(
            set(history.history), {"loss", "image_to_text_accuracy", "text_to_image_accuracy", "logit_scale"}
        )
        self.assertGreater(history.history["loss"][0], 0.0)
        model.fit((self.data["images"], self.data["token_ids"]), batch_size=4, epochs=1, verbose=0)
        model.fit(self.data["images"], self.data["token_ids"], 4, 1, 0)  # positional batch_size, epochs, verbose
        dataset = tf.data.Dataset.from_tensor_slices((self.data["images"], self.data["token_ids"])).batch(4)
        logs = model.evaluate(dataset, verbose=0, return_dict=True)
        self.assertTrue(np.isfinite(logs["loss"]))

    def test_feature_map_image_encoder_is_mean_pooled(self):
        image_encoder = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3)])  # (b, 4, 4, 4)
        model = CLIP(image_encoder, TextTransformerEncoder(12, 5, 8, 1, 2), projection_dim=6)
        out = model.predict(self.data, verbose=0)
        features = image_encoder.predict(self.data["images"], verbose=0).mean(axis=(1, 2))
        expected = features @ model.image_projection.kernel.numpy()
        self.assertAllClose(
            out["image_embeddings"], expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5
        )

    def test_logit_scale_is_clamped_after_each_step(self):
        model = build_clip()
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        model(self.data)
        model.log_logit_scale.assign(math.log(1000.0))
        model.fit(self.data, batch_size=8, epochs=1, verbose=0)
        self.assertAllClose(model.get_logit_scale(), 100.0, atol=1e-3)

    def test_mixed_precision_dtypes_and_clamped_scale(self):
        # The step itself (finite logs, float32 outputs): the model zoo (tests/reliability/test_mixed_precision.py).
        keras.config.set_dtype_policy("mixed_float16")  # tearDown restores float32
        model = build_clip()
        model.compile(optimizer="adam")
        self.assertEqual(keras.backend.standardize_dtype(model.log_logit_scale.dtype), "float32")
        self.assertEqual(keras.backend.standardize_dtype(model.image_projection.compute_dtype), "float16")
        # A scale at its clamp does not overflow in float16 logits.
        model.log_logit_scale.assign(math.log(100.0))
        logs = model.evaluate(self.data, batch_size=8, verbose=0, return_dict=True)
        self.assertTrue(np.isfinite(logs["loss"]))

    def test_global_batch_under_mirrored_strategy_equals_single_device(self):
        check_mirrored_probe(self)

    def test_bad_arguments(self):
        for bad in (0.0, -1.0):
            self.assertRaisesValueError(
                ["`logit_scale_init` must be a positive finite number", f"logit_scale_init={bad}"],
                build_clip,
                logit_scale_init=bad,
            )
        self.assertRaisesValueError("must lie in [1, max_logit_scale]", build_clip, logit_scale_init=200.0)
        self.assertRaisesValueError("`max_logit_scale` must be >= 1", build_clip, max_logit_scale=0.5)
        self.assertRaisesValueError("`projection_dim` must be a positive integer", build_clip, projection_dim=0)
        self.assertRaisesValueError("`text_pooling` must be one of", build_clip, text_pooling="max")
        self.assertRaisesValueError(
            "`image_encoder` must be a Keras model or layer", CLIP, "resnet", TextTransformerEncoder(12, 5)
        )

    def test_bad_data(self):
        model = self.model
        self.assertRaisesValueError(
            ["same number of pairs", "8 images and 7 texts"],
            model.fit,
            {"images": self.data["images"], "token_ids": self.data["token_ids"][:7]},
        )
        one = {k: v[:1] for k, v in self.data.items()}
        self.assertRaisesValueError("at least 2 (image, text) pairs", model.fit, one)
        self.assertRaisesValueError("`batch_size` must leave at least 2 pairs", model.fit, self.data, batch_size=1)
        self.assertRaisesValueError("Received: batch_size=7 for 8 pairs", model.evaluate, self.data, batch_size=7)
        dataset = tf.data.Dataset.from_tensor_slices(self.data).batch(1, drop_remainder=True)
        self.assertRaisesValueError("batched by 1", model.fit, dataset)
        bad = dict(self.data)
        bad["images"] = bad["images"].copy()
        bad["images"][0, 0, 0, 0] = np.nan
        self.assertRaisesValueError(["finite", "1 NaN"], model.fit, bad, batch_size=8)
        self.assertRaisesValueError("keys 'images' and 'token_ids'", model.predict, {"images": self.data["images"]})
        self.assertRaisesValueError(
            "does not support `sample_weight`", model.fit, self.data, sample_weight=np.ones(8), batch_size=8
        )
        nan_dataset = tf.data.Dataset.from_tensor_slices(bad).batch(4)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "`images` must contain only finite values"):
            model.fit(nan_dataset, verbose=0)
        with self.assertRaisesRegex(ValueError, "same number of pairs"):
            model._contrastive(tf.ones((4, 6)), tf.ones((3, 6)))
