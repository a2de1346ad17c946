import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.callbacks import GradientReversalSchedule
from keras_transfer.datasets import domain_pairs
from keras_transfer.layers import GradientReversal
from keras_transfer.models import DANN
from tests.test_case import TestCase
from tests.test_case import run_probe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def parts(seed=0, domain=True):
    keras.utils.set_random_seed(seed)
    fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")], name="fe")
    lc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)], name="lc")
    dc = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)], name="dc"
    )
    return (fe, lc, dc) if domain else (fe, lc)


def one_batch(xs, xt, ys):
    return tf.data.Dataset.from_tensors(((xs, xt), ys))


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class DANNTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.xs = rng.normal(size=(10, 4)).astype("float32")
        cls.ys = rng.integers(0, 3, size=10).astype("int64")
        cls.xt = (rng.normal(size=(6, 4)) + 1.5).astype("float32")

    def test_step_matches_reference_losses_and_gradients(self):
        fe, lc, dc = parts()
        model = DANN(fe, lc, dc, factor=0.7, domain_loss_weight=1.5)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        # Reference: plain sub-model calls, NumPy losses, tape gradients of the two losses
        # WITHOUT the reversal layer, combined by hand as in Ganin et al. eq. (13)-(15).
        domain = np.r_[np.zeros(10), np.ones(6)].astype("float32")
        with tf.GradientTape(persistent=True) as tape:
            fs, ft = fe(self.xs), fe(self.xt)
            logits = lc(fs)
            dlogits = tf.squeeze(dc(tf.concat([fs, ft], 0)), -1)
            label_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(self.ys, logits))
            domain_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(domain, dlogits))
        g_label = tape.gradient(label_loss, fe.trainable_variables + lc.trainable_variables)
        g_domain_fe = tape.gradient(domain_loss, fe.trainable_variables)
        g_domain_dc = tape.gradient(domain_loss, dc.trainable_variables)
        before = [v.numpy() for v in fe.trainable_variables + lc.trainable_variables + dc.trainable_variables]
        numpy_label = -log_softmax(logits.numpy())[np.arange(10), self.ys].mean()
        z = dlogits.numpy()
        numpy_domain = np.mean(np.maximum(z, 0) - z * domain + np.log1p(np.exp(-np.abs(z))))

        history = model.fit(one_batch(self.xs, self.xt, self.ys), epochs=1, verbose=0).history
        self.assertAllClose(history["label_loss"][0], numpy_label, rtol=1e-5)
        self.assertAllClose(history["domain_loss"][0], numpy_domain, rtol=1e-5)
        self.assertAllClose(history["loss"][0], numpy_label + 1.5 * numpy_domain, rtol=1e-5)
        self.assertAllClose(history["label_accuracy"][0], np.mean(logits.numpy().argmax(-1) == self.ys))
        self.assertAllClose(history["domain_accuracy"][0], np.mean((z > 0) == (domain > 0)))

        n_fe = len(fe.trainable_variables)
        expected = []
        for i, g in enumerate(g_label[:n_fe]):
            expected.append(before[i] - 0.1 * (g.numpy() - 0.7 * 1.5 * g_domain_fe[i].numpy()))
        for i, g in enumerate(g_label[n_fe:]):
            expected.append(before[n_fe + i] - 0.1 * g.numpy())
        for i, g in enumerate(g_domain_dc):
            expected.append(before[n_fe + len(lc.trainable_variables) + i] - 0.1 * 1.5 * g.numpy())
        after = fe.trainable_variables + lc.trainable_variables + dc.trainable_variables
        for v, e in zip(after, expected):
            self.assertAllClose(v.numpy(), e, atol=1e-6, rtol=1e-5, msg=v.path)

    def test_mirrored_strategy_matches_one_device(self):
        # Subprocess: the two logical CPU devices must exist before TF initialises. One
        # global batch of 8 source + 8 target examples split 4 + 4 over two replicas: the
        # label loss (source rows) and the domain loss (both domains) are means over the
        # global batch, so the summed replica gradients equal the one-device gradient.
        result = run_probe(os.path.join(HERE, "_dann_distributed_probe.py"))
        self.assertEqual(result["replicas"], 2)
        for kind, metrics in (
            ("dann", ("loss", "label_loss", "label_accuracy", "domain_loss", "domain_accuracy")),
            ("source_only", ("loss", "label_loss", "label_accuracy")),
        ):
            r = result["results"][kind]
            for name in metrics:
                self.assertAllClose(r["logs"][name], r["reference_logs"][name], atol=1e-5, rtol=1e-5)
            self.assertGreater(r["max_grad"], 0.05)  # the comparison is not vacuous
            self.assertLess(r["max_grad_diff"], 1e-5)

    def test_call_is_the_label_path_and_export(self):
        fe, lc, dc = parts()
        model = DANN(fe, lc, dc)
        self.assertAllClose(model.predict(self.xs, verbose=0), lc(fe(self.xs)), atol=1e-6)
        self.run_export_test(model, self.xs)

    def test_export_straight_after_fit_and_after_reload(self):
        # The README's domain-adaptation block: fit, then export (raised "has never called").
        def build():
            fe, lc, dc = parts()
            model = DANN(fe, lc, dc, factor=0.5)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            return model

        model, reloaded = self.run_fit_then_export_test(build, one_batch(self.xs, self.xt, self.ys), self.xs)
        fe, lc = model.feature_extractor, model.label_classifier
        self.assertAllClose(reloaded.predict(self.xs, verbose=0), lc(fe(self.xs)), atol=1e-6)
        self.assertAllClose(reloaded.factor, 0.5)

    def test_keras_round_trip_default_domain_classifier(self):
        fe, lc = parts(domain=False)
        model = DANN(fe, lc, factor=0.5)
        model.compile(optimizer="adam")
        model.fit(one_batch(self.xs, self.xt, self.ys), epochs=1, verbose=0)
        model.factor = 0.25
        reloaded = self.run_serialization_test(model, self.xs)
        self.assertAllClose(reloaded.factor, 0.25)
        self.assertAllClose(reloaded.domain_logits(self.xt), model.domain_logits(self.xt), atol=1e-6)
        self.assertEqual([layer.units for layer in reloaded.domain_classifier.layers], [100, 1])
        # The reloaded model is compiled and keeps training.
        reloaded.fit(one_batch(self.xs, self.xt, self.ys), epochs=1, verbose=0)

    def test_fit_with_domain_pairs_schedule_and_validation(self):
        fe, lc, dc = parts()
        model = DANN(fe, lc, dc, factor=0.0)
        model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=True)
        data = domain_pairs(self.xs, self.ys, self.xt, batch_size=4, target_batch_size=3)
        val = one_batch(self.xs, self.xt, self.ys)
        schedule = GradientReversalSchedule()
        history = self.run_fit_test(model, data, steps=2)
        history = model.fit(data, validation_data=val, epochs=2, verbose=0, callbacks=[schedule]).history
        for key in (
            "label_accuracy",
            "domain_accuracy",
            "val_label_accuracy",
            "val_domain_accuracy",
            "val_loss",
            "grl_factor",
        ):
            self.assertIn(key, history)
            self.assertTrue(np.all(np.isfinite(history[key])))
        self.assertGreater(model.factor, 0.0)
        # Plain labelled (x, y) evaluation reports the label metrics only.
        result = model.evaluate(self.xt, np.zeros(6, "int64"), verbose=0, return_dict=True)
        self.assertEqual(sorted(result), ["label_accuracy", "label_loss", "loss"])
        logits = model.predict(self.xt, verbose=0)
        self.assertAllClose(result["label_accuracy"], np.mean(logits.argmax(-1) == 0))

    def test_eager_and_xla_steps_agree(self):
        results = []
        for mode in ({"run_eagerly": True}, {"jit_compile": True}):
            fe, lc, dc = parts()
            model = DANN(fe, lc, dc, factor=0.5)
            model.compile(optimizer=keras.optimizers.SGD(0.1), **mode)
            model.fit(one_batch(self.xs, self.xt, self.ys), epochs=2, verbose=0)
            results.append([v.numpy() for v in model.trainable_variables])
        for eager, xla in zip(*results):
            self.assertAllClose(eager, xla, atol=1e-5, rtol=1e-5)

    def test_sample_weights(self):
        fe, lc, dc = parts()
        model = DANN(fe, lc, dc)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        weights = np.linspace(0.0, 2.0, 10).astype("float32")
        logits = lc(fe(self.xs)).numpy()
        per_example = -log_softmax(logits)[np.arange(10), self.ys]
        data = tf.data.Dataset.from_tensors(((self.xs, self.xt), self.ys, weights))
        history = model.fit(data, epochs=1, verbose=0).history
        self.assertAllClose(history["label_loss"][0], np.sum(per_example * weights) / 10, rtol=1e-5)

    def test_two_logit_domain_classifier_and_gradient_reversal_found(self):
        fe, lc = parts(domain=False)
        dc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
        model = DANN(fe, lc, dc)
        model.compile(optimizer="sgd")
        history = model.fit(one_batch(self.xs, self.xt, self.ys), epochs=1, verbose=0).history
        self.assertTrue(np.isfinite(history["domain_loss"][0]))
        from keras_transfer.callbacks.gradient_reversal_schedule import find_gradient_reversal_layers

        self.assertEqual(find_gradient_reversal_layers(model), [model.gradient_reversal])
        self.assertIsInstance(model.gradient_reversal, GradientReversal)

    def test_mixed_float16_step(self):
        def build():
            fe, lc, dc = parts()
            model = DANN(fe, lc, dc)
            model.compile(optimizer="sgd")
            return model

        model, _ = self.run_mixed_precision_test(build, one_batch(self.xs, self.xt, self.ys))
        # Computed in float16, served as float32 (mixed precision: float32 outputs).
        self.assertEqual(model.label_classifier.compute_dtype, "float16")
        self.assertEqual(model.predict(self.xs, verbose=0).dtype, np.float32)

    def test_bad_input(self):
        fe, lc, dc = parts()
        model = DANN(fe, lc, dc)
        model.compile(optimizer="sgd")
        xt5 = np.ones((6, 5), "float32")
        self.assertRaisesValueError(
            ["`source_x` and `target_x` must have the same feature shape", "feature shape (4,)", "feature shape (5,)"],
            model.fit,
            one_batch(self.xs, xt5, self.ys),
            epochs=1,
            verbose=0,
        )
        self.assertRaisesValueError(
            ["`target_x` must hold at least one example"],
            model.fit,
            one_batch(self.xs, self.xt[:0], self.ys),
            epochs=1,
            verbose=0,
        )
        yt = np.zeros(6, "int64")
        self.assertRaisesValueError(
            ["`y` must hold the source labels only", "target labels?"],
            model.fit,
            tf.data.Dataset.from_tensors(((self.xs, self.xt), (self.ys, yt))),
            epochs=1,
            verbose=0,
        )
        self.assertRaisesValueError(
            ["`x` must be the pair `(source_x, target_x)`", "3 parts"],
            model.fit,
            tf.data.Dataset.from_tensors(((self.xs, self.xt, yt), self.ys)),
            epochs=1,
            verbose=0,
        )
        self.assertRaisesValueError(
            ["must be trained on `((source_x, target_x), source_y)`", "plain"],
            model.fit,
            self.xs,
            self.ys,
            epochs=1,
            verbose=0,
        )
        self.assertRaisesValueError(["`factor`", "Received: factor=-1"], DANN, fe, lc, dc, factor=-1)
        self.assertRaisesValueError(
            ["`domain_loss_weight`", "Received: domain_loss_weight=-2"], DANN, fe, lc, dc, domain_loss_weight=-2
        )
        self.assertRaisesValueError(["`domain_classifier`", "Received: domain_classifier='mlp'"], DANN, fe, lc, "mlp")
        self.assertRaisesValueError(["`feature_extractor`"], DANN, "resnet", lc)
        bad = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        self.assertRaisesValueError(
            ["`domain_classifier` must output one logit", "(None, 3)", "Dense(1)"], DANN, fe, lc, bad
        )
