import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets import domain_pairs
from keras_transfer.losses import coral_loss
from keras_transfer.models import DeepCORAL
from tests.test_case import TestCase


def parts(seed=0):
    keras.utils.set_random_seed(seed)
    fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="tanh")])
    lc = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    return fe, lc


def numpy_coral(a, b):
    d = a.shape[1]
    return np.sum((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2) / (4 * d * d)


class DeepCORALTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(1)
        cls.xs = rng.normal(size=(10, 4)).astype("float32")
        cls.ys = rng.integers(0, 3, size=10).astype("int64")
        cls.xt = (rng.normal(size=(7, 4)) * 2 + 1).astype("float32")

    def test_step_matches_reference(self):
        for coral_on in ("logits", "features"):
            fe, lc = parts()
            model = DeepCORAL(fe, lc, coral_weight=2.0, coral_on=coral_on)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            fs, ft = fe(self.xs), fe(self.xt)
            a, b = (lc(fs), lc(ft)) if coral_on == "logits" else (fs, ft)
            expected_coral = numpy_coral(a.numpy().astype("float64"), b.numpy().astype("float64"))
            with tf.GradientTape() as tape:
                fs, ft = fe(self.xs), fe(self.xt)
                a, b = (lc(fs), lc(ft)) if coral_on == "logits" else (fs, ft)
                ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(self.ys, lc(fs)))
                total = ce + 2.0 * coral_loss(a, b)
            grads = tape.gradient(total, model.trainable_variables)
            expected = [v.numpy() - 0.1 * g.numpy() for v, g in zip(model.trainable_variables, grads)]
            history = model.fit(
                tf.data.Dataset.from_tensors(((self.xs, self.xt), self.ys)), epochs=1, verbose=0
            ).history
            self.assertAllClose(history["coral_loss"][0], expected_coral, rtol=1e-4)
            self.assertAllClose(history["loss"][0], history["label_loss"][0] + 2.0 * expected_coral, rtol=1e-4)
            for v, e in zip(model.trainable_variables, expected):
                self.assertAllClose(v.numpy(), e, atol=1e-6, rtol=1e-5)

    def test_harness(self):
        fe, lc = parts()
        model = DeepCORAL(fe, lc, coral_weight=0.5, coral_on="features")
        model.compile(optimizer="adam")
        self.run_fit_test(model, domain_pairs(self.xs, self.ys, self.xt, batch_size=4), steps=2)
        reloaded = self.run_serialization_test(model, self.xs)
        self.assertEqual((reloaded.coral_weight, reloaded.coral_on), (0.5, "features"))
        self.run_export_test(model, self.xs)

        def build():
            fe, lc = parts()
            m = DeepCORAL(fe, lc)
            m.compile(optimizer="sgd")
            return m

        self.run_mixed_precision_test(build, tf.data.Dataset.from_tensors(((self.xs, self.xt), self.ys)))

    def test_export_straight_after_fit_and_after_reload(self):
        def build():
            fe, lc = parts()
            m = DeepCORAL(fe, lc, coral_weight=0.5)
            m.compile(optimizer=keras.optimizers.SGD(0.1))
            return m

        model, reloaded = self.run_fit_then_export_test(
            build, tf.data.Dataset.from_tensors(((self.xs, self.xt), self.ys)), self.xs
        )
        fe, lc = model.feature_extractor, model.label_classifier
        self.assertAllClose(reloaded.predict(self.xs, verbose=0), lc(fe(self.xs)), atol=1e-6)

    def test_errors(self):
        fe, lc = parts()
        self.assertRaisesValueError(["`coral_weight`", "Received: coral_weight=-1"], DeepCORAL, fe, lc, coral_weight=-1)
        self.assertRaisesValueError(["`coral_on`", "'inputs'"], DeepCORAL, fe, lc, coral_on="inputs")
        model = DeepCORAL(fe, lc)
        model.compile(optimizer="sgd")
        self.assertRaisesValueError(
            ["`target_features` must hold at least 2 examples"],
            model.fit,
            tf.data.Dataset.from_tensors(((self.xs, self.xt[:1]), self.ys)),
            epochs=1,
            verbose=0,
        )
