import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.augment import SimCLRAugmentation
from keras_transfer.augment import simclr_dataset
from keras_transfer.models import SimCLR
from tests.losses.test_nt_xent import numpy_nt_xent
from tests.test_case import TestCase
from tests.test_case import run_probe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def make_encoder(input_shape=(8, 8, 1)):
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="encoder",
    )


def make_pairs(n=8, seed=0):
    rng = np.random.default_rng(seed)
    v1 = rng.uniform(0, 255, size=(n, 8, 8, 1)).astype("float32")
    v2 = np.clip(v1 + rng.normal(0, 20, size=v1.shape), 0, 255).astype("float32")
    return v1, v2


def pairs_dataset(v1, v2, batch_size):
    return tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(batch_size)


def nan_hiding_encoder(input_shape=(8, 8, 1)):
    """Conv -> max pooling: a NaN pixel's neighbours win the max, so the forward pass (and the
    loss) stays finite while the kernel's gradient (and then the kernel) is NaN; with a NaN
    kernel every window is NaN and max pooling outputs the same finite number everywhere."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="encoder",
    )


class BatchLog(keras.callbacks.Callback):
    """Per training batch: the logged metrics and whether all weights were finite."""

    def __init__(self):
        super().__init__()
        self.logs, self.weights_finite = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append({k: float(v) for k, v in logs.items()})
        self.weights_finite.append(all(np.all(np.isfinite(w.numpy())) for w in self.model.weights))


def assert_nan_is_reported(test, build, bad_data, clean_data, fit_kwargs=None):
    """`build()` is a compiled model; `bad_data` has a NaN in its first batch.

    TerminateOnNaN must stop at batch 0 with every metric NaN; without it, no batch may log a
    finite metric while a weight is NaN, and `evaluate` on clean data with the NaN weights
    must say NaN too.
    """
    fit_kwargs = dict(fit_kwargs or {}, verbose=0, shuffle=False)
    model = build()
    log = BatchLog()
    model.fit(bad_data, epochs=3, callbacks=[keras.callbacks.TerminateOnNaN(), log], **fit_kwargs)
    test.assertEqual(len(log.logs), 1, f"TerminateOnNaN did not stop at batch 0: {log.logs}")
    for name, value in log.logs[0].items():
        test.assertTrue(np.isnan(value), f"{name} logged {value} on a batch holding NaN")
    model = build()
    log = BatchLog()
    model.fit(bad_data, epochs=1, callbacks=[log], **fit_kwargs)
    model.fit(clean_data, epochs=1, callbacks=[log], **fit_kwargs)
    test.assertFalse(log.weights_finite[0])  # the NaN batch broke the weights
    for logs, finite in zip(log.logs, log.weights_finite):
        if not finite:
            for name, value in logs.items():
                test.assertTrue(np.isnan(value), f"{name} logged {value} while a weight is NaN")
    kwargs = {"batch_size": fit_kwargs["batch_size"]} if "batch_size" in fit_kwargs else {}
    result = model.evaluate(clean_data, verbose=0, return_dict=True, **kwargs)
    for name, value in result.items():
        test.assertTrue(np.isnan(value), f"evaluate's {name} is {value} while the weights are NaN")


class SimCLRTest(TestCase):
    def build(self, **kwargs):
        kwargs.setdefault("projection_dim", 4)
        kwargs.setdefault("temperature", 0.5)
        model = SimCLR(make_encoder(), **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        return model

    def test_loss_matches_numpy_and_reports_metrics(self):
        model = self.build()
        v1, v2 = make_pairs(8)
        z1 = model.projection_head(model.encoder(v1)).numpy()
        z2 = model.projection_head(model.encoder(v2)).numpy()
        result = model.evaluate(pairs_dataset(v1, v2, 8), verbose=0, return_dict=True)
        self.assertEqual(set(result), {"loss", "contrastive_accuracy"})
        self.assertAllClose(result["loss"], numpy_nt_xent(z1, z2, 0.5), atol=1e-5, rtol=1e-5)
        # Accuracy: share of anchors whose positive is the most similar other embedding.
        z = np.concatenate([z1, z2]) / np.linalg.norm(np.concatenate([z1, z2]), axis=1, keepdims=True)
        s = z @ z.T
        np.fill_diagonal(s, -np.inf)
        expected = np.mean(np.argmax(s, axis=1) == np.r_[np.arange(8, 16), np.arange(8)])
        self.assertAllClose(result["contrastive_accuracy"], expected, atol=1e-6)

    def test_partial_final_batch_is_exact(self):
        # 7 pairs in batches of 4 + 3: the epoch loss is the anchor-weighted mean of exact batch losses.
        model = self.build()
        v1, v2 = make_pairs(7)
        z1 = model.projection_head(model.encoder(v1)).numpy()
        z2 = model.projection_head(model.encoder(v2)).numpy()
        expected = (8 * numpy_nt_xent(z1[:4], z2[:4], 0.5) + 6 * numpy_nt_xent(z1[4:], z2[4:], 0.5)) / 14
        result = model.evaluate(pairs_dataset(v1, v2, 4), verbose=0, return_dict=True)
        self.assertAllClose(result["loss"], expected, atol=1e-5, rtol=1e-5)

    def test_fit_save_and_export_after_reload(self):
        # Resume (BackupAndRestore, and fit on after a reload), export straight after fit and one
        # mixed-precision step run for SimCLR in the model zoo (tests/reliability/test_resume.py,
        # tests/reliability/test_resume.py, tests/reliability/test_mixed_precision.py; NaN: test_resume.py).
        model = self.build()
        v1, v2 = make_pairs(8)
        data = pairs_dataset(v1, v2, 8)
        self.run_fit_test(model, data)
        reloaded = self.run_serialization_test(model, v1, export_reloaded=True)
        self.assertEqual(reloaded.optimizer.iterations.numpy(), model.optimizer.iterations.numpy())
        features = model.predict(v1, verbose=0)
        self.assertAllClose(features, model.encoder.predict(v1, verbose=0))
        self.assertEqual(features.shape, (8, 4))

    @pytest.mark.compiled
    def test_nan_is_reported_and_stops_training(self):
        # Before the fix the first batch logged a finite loss while the kernel was NaN, and
        # with NaN weights every later batch logged a constant finite loss.
        v1, v2 = make_pairs(16)
        bad = v1.copy()
        bad[0, 3, 3, 0] = np.nan

        def build():
            model = SimCLR(nan_hiding_encoder(), projection_dim=4, temperature=0.5)
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
            return model

        assert_nan_is_reported(self, build, pairs_dataset(bad, v2, 8), pairs_dataset(v1, v2, 8))
        # A clean model on clean data still reports finite values (the check is not always NaN).
        history = build().fit(pairs_dataset(v1, v2, 8), epochs=1, verbose=0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))

    def test_seeded_readme_pipeline_is_reproducible(self):
        # README: SimCLRAugmentation + simclr_dataset + fit, seeded by set_random_seed only
        # (no op determinism). Stateful ops in the parallel map made two runs differ.
        x = np.random.default_rng(0).integers(0, 256, size=(64, 8, 8, 1)).astype("uint8")

        def run(seed):
            keras.utils.set_random_seed(seed)
            model = self.build()
            views = SimCLRAugmentation(8, crop_scale=(0.3, 1.0), flip=False, blur_probability=0.0)
            data = simclr_dataset(x, batch_size=16, augmentation=views)
            batches = [np.concatenate(pair) for (pair,) in data]
            history = model.fit(data, epochs=2, verbose=0)
            return batches, [w.numpy() for w in model.weights], history.history["loss"]

        batches, weights, losses = run(1)
        again_batches, again_weights, again_losses = run(1)
        for a, b in zip(batches, again_batches):
            self.assertAllClose(a, b, atol=0)
        for a, b in zip(weights, again_weights):
            self.assertAllClose(a, b, atol=0)
        self.assertAllClose(losses, again_losses, atol=0)
        other_batches, other_weights, _ = run(2)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(batches, other_batches)), 100)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(weights, other_weights)), 1e-3)

    def test_augmenter_inside_the_step(self):
        model = self.build(augmenter=SimCLRAugmentation(8, blur_probability=0.0))
        x = np.random.default_rng(0).integers(0, 256, size=(8, 8, 8, 1)).astype("uint8")
        history = model.fit(x, batch_size=4, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        reloaded = keras.saving.load_model(self._save(model))
        self.assertIsInstance(reloaded.augmenter, SimCLRAugmentation)
        # And the tf.data pipeline feeds pairs.
        history = model.fit(simclr_dataset(x, batch_size=4), epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))

    def _save(self, model):
        path = os.path.join(self.get_temp_dir(), "m.keras")
        model.save(path)
        return path

    def test_custom_projection_head(self):
        head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model = self.build(projection_head=head)
        v1, v2 = make_pairs(4)
        model.fit(pairs_dataset(v1, v2, 4), verbose=0)
        reloaded = keras.saving.load_model(self._save(model))
        self.assertEqual(reloaded.projection_head.output_shape, (None, 3))

    def test_mixed_precision_dtypes(self):
        # The mixed-precision step itself: the model zoo (tests/reliability/test_mixed_precision.py).
        keras.config.set_dtype_policy("mixed_float16")  # tearDown restores float32
        model = self.build(temperature=0.05)
        self.assertEqual(model.encoder.compute_dtype, "float16")
        self.assertEqual(model.projection_head.compute_dtype, "float16")

    def test_bad_arguments(self):
        encoder = make_encoder()
        self.assertRaisesValueError(
            ["`temperature` must be a positive", "temperature=0"], SimCLR, encoder, temperature=0
        )
        self.assertRaisesValueError("temperature=-1", SimCLR, encoder, temperature=-1)
        self.assertRaisesValueError(
            ["`projection_dim` must be a positive", "projection_dim=0"], SimCLR, encoder, projection_dim=0
        )
        self.assertRaisesValueError("`projection_hidden_dim`", SimCLR, encoder, projection_hidden_dim=-2)
        self.assertRaisesValueError("must be a Keras model or layer", SimCLR, "resnet")
        self.assertRaisesValueError("`projection_head` must be a Keras", SimCLR, encoder, projection_head=3)
        self.assertRaisesValueError(["unbuilt", "keras.Input"], SimCLR, keras.Sequential([keras.layers.Dense(3)]))
        conv = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
        self.assertRaisesValueError(["(batch, features)", "GlobalAveragePooling2D"], SimCLR, conv)

    @pytest.mark.compiled
    def test_bad_data(self):
        model = self.build()
        v1, v2 = make_pairs(4)
        self.assertRaisesValueError(
            ["rank 4", "view_1.shape=(None, 8, 8)", "x[..., None]"],
            model.fit,
            pairs_dataset(v1[..., 0], v2[..., 0], 4),
            verbose=0,
        )
        self.assertRaisesValueError(["no `augmenter`", "simclr_dataset"], model.fit, v1, batch_size=4, verbose=0)
        three = tf.data.Dataset.from_tensor_slices(((v1, v2, v1),)).batch(4)
        self.assertRaisesValueError("tuple of 3", model.fit, three, verbose=0)
        # Batch of one: no negatives -> a clear error, never a silent loss.
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "fewer than 2 pairs"):
            model.fit(pairs_dataset(v1[:1], v2[:1], 4), verbose=0)


class SimCLRGradientCacheTest(TestCase):
    def one_step(self, chunk_size, v1, v2, batch_size):
        keras.utils.set_random_seed(0)
        # No batch-coupled layer (BatchNorm) in the encoder: chunking must not change the step.
        encoder = keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(6, activation="tanh")]
        )
        model = SimCLR(encoder, projection_dim=4, temperature=0.5, chunk_size=chunk_size)
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        before = [w.numpy() for w in model.trainable_weights]
        history = model.fit(pairs_dataset(v1, v2, batch_size), epochs=1, verbose=0).history
        return history, [b - w.numpy() for b, w in zip(before, model.trainable_weights)], model

    def test_chunked_step_equals_the_plain_step(self):
        # 2 x 7 views in chunks of 3 (the last chunk holds 2): SGD(1) makes the update the gradient.
        v1, v2 = (v / 255.0 for v in make_pairs(7))
        plain, plain_grads, _ = self.one_step(None, v1, v2, 7)
        chunked, chunked_grads, model = self.one_step(3, v1, v2, 7)
        self.assertAllClose(chunked["loss"], plain["loss"], atol=1e-6, rtol=1e-6)
        self.assertAllClose(chunked["contrastive_accuracy"], plain["contrastive_accuracy"])
        self.assertGreater(max(np.abs(g).max() for g in plain_grads), 1e-3)  # not vacuous
        for a, b in zip(chunked_grads, plain_grads):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-5)
        self.assertEqual(model.get_config()["chunk_size"], 3)

    def test_mixed_precision(self):
        # Loss scaling goes through the cached projection gradients: the step stays finite and trains.
        v1, v2 = make_pairs(8)

        def build():
            model = SimCLR(make_encoder(), projection_dim=4, temperature=0.05, chunk_size=5)
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
            return model

        model, _ = self.run_mixed_precision_test(build, pairs_dataset(v1, v2, 8))
        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    def test_round_trip_and_bad_chunk_size(self):
        v1, v2 = make_pairs(8)
        model = SimCLR(make_encoder(), projection_dim=4, chunk_size=4)
        model.compile(optimizer="adam")
        model.fit(pairs_dataset(v1, v2, 8), epochs=1, verbose=0)
        restored = self.run_serialization_test(model, v1)  # serving ignores `chunk_size`: exported in the zoo
        self.assertEqual(restored.chunk_size, 4)
        self.assertRaisesValueError(["`chunk_size`", "chunk_size=0"], SimCLR, make_encoder(), chunk_size=0)


class SimCLRDistributedTest(TestCase):
    def test_global_batch_loss_and_gradients_equal_single_device(self):
        # Subprocess: the two logical CPU devices must exist before TF initialises.
        # Global batches of 8 then a partial 7 (split 4 + 3 over the replicas).
        result = run_probe(os.path.join(HERE, "_simclr_distributed_probe.py"), "8,7")
        self.assertEqual(result["replicas"], 2)
        distributed = result["distributed"]["True"]
        self.assertAllClose(distributed["loss"], result["reference_loss"], atol=1e-5, rtol=1e-5)
        self.assertAllClose(distributed["accuracy"], result["reference_accuracy"], atol=1e-6)
        self.assertLess(distributed["max_grad_diff"], 1e-5)
        self.assertGreater(result["max_grad"], 0.1)  # the comparison is not vacuous
        # Gradient caching with global-batch negatives: the same loss and gradients.
        chunked = result["distributed"]["chunked"]
        self.assertAllClose(chunked["loss"], result["reference_loss"], atol=1e-5, rtol=1e-5)
        self.assertLess(chunked["max_grad_diff"], 1e-5)
        # Without the all-gather, each replica only sees its local negatives: different numbers.
        local = result["distributed"]["False"]
        self.assertGreater(abs(local["loss"] - result["reference_loss"]), 1e-2)
        self.assertGreater(local["max_grad_diff"], 1e-2)
        # MoCo trains under several replicas (equality with one device: tests/distribute);
        # one step of a global batch of 8 fills 8 queue rows, the same on both devices.
        self.assertTrue(np.isfinite(result["moco"]["loss"]))
        self.assertEqual(result["moco"]["pointer"], 8)
        self.assertEqual(result["moco"]["queue_spread"], 0.0)
