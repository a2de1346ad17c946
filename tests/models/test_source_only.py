import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets import domain_pairs
from keras_transfer.models import SourceOnly
from tests.test_case import TestCase


def parts(seed=0, units=3):
    keras.utils.set_random_seed(seed)
    fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu")])
    lc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(units)])
    return fe, lc


class SourceOnlyTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.xs = rng.normal(size=(8, 4)).astype("float32")
        cls.ys = rng.integers(0, 3, size=8).astype("int64")
        cls.xt = (rng.normal(size=(5, 4)) * 3).astype("float32")

    def test_matches_a_plain_keras_model_and_ignores_the_target(self):
        # Reference: keras.Sequential([fe, lc]) trained with Keras's own loss on the source batch.
        fe, lc = parts()
        reference = keras.Sequential([keras.Input((4,)), fe, lc])
        reference.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        expected_before = reference.evaluate(self.xs, self.ys, verbose=0, return_dict=True)
        reference.fit(self.xs, self.ys, batch_size=8, epochs=1, shuffle=False, verbose=0)
        expected_weights = [v.numpy() for v in reference.trainable_variables]

        fe, lc = parts()
        model = SourceOnly(fe, lc)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        data = tf.data.Dataset.from_tensors(((self.xs, self.xt), self.ys))
        history = model.fit(data, epochs=1, verbose=0).history
        self.assertAllClose(history["label_loss"][0], expected_before["loss"], rtol=1e-5)
        self.assertAllClose(history["label_accuracy"][0], expected_before["accuracy"])
        self.assertEqual(sorted(history), ["label_accuracy", "label_loss", "loss"])
        for v, e in zip(model.trainable_variables, expected_weights):
            self.assertAllClose(v.numpy(), e, atol=1e-6)
        # Plain (x, y) training works too.
        model.fit(self.xs, self.ys, epochs=1, verbose=0)

    def test_one_hot_binary_and_probability_outputs(self):
        fe, lc = parts()
        model = SourceOnly(fe, lc)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        one_hot = np.eye(3, dtype="float32")[self.ys]
        logits = model.predict(self.xs, verbose=0)
        expected = keras.losses.categorical_crossentropy(one_hot, logits, from_logits=True).numpy().mean()
        result = model.evaluate(self.xs, one_hot, verbose=0, return_dict=True)
        self.assertAllClose(result["label_loss"], expected, rtol=1e-5)

        fe, lc = parts(units=1)
        binary = SourceOnly(fe, lc)
        binary.compile(optimizer="sgd")
        yb = (self.ys > 0).astype("float32")
        z = binary.predict(self.xs, verbose=0)[:, 0]
        result = binary.evaluate(self.xs, yb, verbose=0, return_dict=True)
        reference = np.mean(np.maximum(z, 0) - z * yb + np.log1p(np.exp(-np.abs(z))))
        self.assertAllClose(result["label_loss"], reference, rtol=1e-5)
        self.assertAllClose(result["label_accuracy"], np.mean((z > 0) == (yb > 0)))

        keras.utils.set_random_seed(0)
        fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6)])
        lc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
        probs = SourceOnly(fe, lc, from_logits=False)
        probs.compile(optimizer="sgd")
        p = probs.predict(self.xs, verbose=0)
        result = probs.evaluate(self.xs, self.ys, verbose=0, return_dict=True)
        self.assertAllClose(result["label_loss"], -np.log(p[np.arange(8), self.ys]).mean(), rtol=1e-5)

    def test_harness(self):
        fe, lc = parts()
        model = SourceOnly(fe, lc)
        model.compile(optimizer="adam")
        self.run_fit_test(model, domain_pairs(self.xs, self.ys, self.xt, batch_size=4), steps=2)
        self.run_serialization_test(model, self.xs)
        self.run_export_test(model, self.xs)

        def build():
            fe, lc = parts()
            m = SourceOnly(fe, lc)
            m.compile(optimizer="sgd")
            return m

        self.run_mixed_precision_test(build, self.xs, self.ys, batch_size=8)

    def test_export_straight_after_fit_and_after_reload(self):
        # Keras's own `fit` never calls a model whose train_step calls only its sub-models:
        # without declared serving inputs `export()` raised "has never called" here.
        data = tf.data.Dataset.from_tensors(((self.xs, self.xt), self.ys))

        def build():
            fe, lc = parts()
            m = SourceOnly(fe, lc)
            m.compile(optimizer=keras.optimizers.SGD(0.1))
            return m

        model, reloaded = self.run_fit_then_export_test(build, data, self.xs)
        fe, lc = model.feature_extractor, model.label_classifier
        self.assertAllClose(reloaded.predict(self.xs, verbose=0), lc(fe(self.xs)), atol=1e-6)

    def test_export_after_fit_with_plain_layers(self):
        # Sub-models without a declared input: the model is built from the first batch.
        data = tf.data.Dataset.from_tensors(((self.xs, self.xt), self.ys))

        def build():
            keras.utils.set_random_seed(0)
            m = SourceOnly(keras.layers.Dense(6, activation="relu"), keras.layers.Dense(3))
            m.compile(optimizer=keras.optimizers.SGD(0.1))
            self.assertFalse(m.built)
            return m

        model, _ = self.run_fit_then_export_test(build, data, self.xs)
        self.assertEqual(model.serving_input_signature()[0].shape, (None, 4))
        unbuilt = SourceOnly(keras.layers.Dense(6), keras.layers.Dense(3))
        self.assertRaisesValueError(
            ["must be built before `export()`", "model.build(input_shape)"],
            unbuilt.export,
            self.get_temp_dir(),
        )

    def test_export_declares_integer_inputs(self):
        # Token ids stay int32 in the serving signature (clients send the tokenizer's ids).
        keras.utils.set_random_seed(0)
        fe = keras.Sequential(
            [
                keras.Input((5,), dtype="int32"),
                keras.layers.Embedding(20, 4),
                keras.layers.GlobalAveragePooling1D(),
            ]
        )
        lc = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        ids_s = np.arange(40).reshape(8, 5).astype("int32") % 20
        ids_t = (ids_s[:5] + 3) % 20
        data = tf.data.Dataset.from_tensors(((ids_s, ids_t), self.ys))

        def build():
            m = SourceOnly(fe, lc)
            m.compile(optimizer="sgd")
            return m

        self.run_fit_then_export_test(build, data, ids_s)

    def test_errors(self):
        fe, lc = parts()
        self.assertRaisesValueError(["`label_classifier`", "Received: label_classifier=3"], SourceOnly, fe, 3)
        self.assertRaisesValueError(
            ["`from_logits`", "Received: from_logits='yes'"], SourceOnly, fe, lc, from_logits="yes"
        )
        model = SourceOnly(fe, lc)
        self.assertRaisesValueError(
            ["`loss` must be None", "Received: loss='mse'"], model.compile, optimizer="sgd", loss="mse"
        )
        self.assertRaisesValueError(
            ["`metrics` must be None", "['accuracy']"], model.compile, optimizer="sgd", metrics=["accuracy"]
        )
        model.compile(optimizer="sgd")
        self.assertRaisesValueError(
            ["`y` must hold the source labels only"],
            model.fit,
            tf.data.Dataset.from_tensors(((self.xs, self.xt), (self.ys, self.ys[:5]))),
            epochs=1,
            verbose=0,
        )
        self.assertRaisesValueError(
            ["trains on labelled source batches", "without labels"],
            model.fit,
            tf.data.Dataset.from_tensors(((self.xs, self.xt),)),
            epochs=1,
            verbose=0,
        )
