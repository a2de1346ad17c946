import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import recipes
from keras_transfer.models import LearningWithoutForgetting
from tests.test_case import TestCase


def source_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="tanh", name="features"),
            keras.layers.Dense(3, activation="softmax", name="head"),
        ]
    )


def numpy_soft_cross_entropy(recorded, logits, temperature):
    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    targets = np.exp(log_softmax(recorded / temperature))
    return -np.mean(np.sum(targets * log_softmax(logits / temperature), axis=1))


class LearningWithoutForgettingTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.x = rng.normal(size=(8, 4)).astype("float32")
        cls.y = rng.integers(0, 2, size=8)
        cls.images = rng.uniform(0, 255, size=(6, 8, 8, 1)).astype("float32")
        cls.labels = np.arange(6) % 2

    def build(self, old_weight=0.5, temperature=2.0):
        source = source_model()
        classifier = recipes.replace_head(source, 2, activation=None)
        model = LearningWithoutForgetting(classifier, source.get_layer("head"), temperature, old_weight)
        return source, model

    @pytest.mark.compiled
    def test_sgd_step_matches_the_loss_of_the_paper(self):
        source, model = self.build()
        w, b = source.get_layer("features").get_weights()
        wo, bo = source.get_layer("head").get_weights()
        recorded = np.tanh(self.x @ w + b) @ wo + bo  # the source network's logits
        self.assertAllClose(model.old_logits(self.x), recorded, rtol=1e-5, atol=1e-6)
        # Move the trained old head and the features away from the source.
        rng = np.random.default_rng(3)
        for v in model.classifier.trainable_variables + model.trained_old_head.trainable_variables:
            v.assign(v.numpy() + rng.normal(size=v.shape).astype("float32"))
        variables = model.trainable_variables
        self.assertEqual(len(variables), 6)  # features (2), new head (2), trained old head (2)
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        old = model.old_logits(self.x).numpy()
        distillation = numpy_soft_cross_entropy(recorded, old, 2.0)
        with tf.GradientTape() as tape:
            new, old_t = model.two_heads(self.x)
            r = tf.constant(recorded, "float32")
            soft = -tf.reduce_mean(tf.reduce_sum(tf.nn.softmax(r / 2) * tf.nn.log_softmax(old_t / 2), axis=1))
            loss = cross_entropy(self.y, new)
            total = loss + 0.5 * soft
        self.assertAllClose(soft, distillation, rtol=1e-5)
        grads = tape.gradient(total, variables)
        before = [v.numpy() for v in variables]
        recorded_weights = [v.numpy() for v in model.recorded.weights]

        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=cross_entropy)
        history = model.fit(self.x, self.y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        self.assertEqual(sorted(history), ["distillation", "loss"])
        self.assertAllClose(history["distillation"][0], distillation, rtol=1e-5)
        self.assertAllClose(history["loss"][0], float(loss) + 0.5 * distillation, rtol=1e-5)
        for v, w0, g in zip(variables, before, grads):
            self.assertAllClose(v.numpy(), w0 - 0.1 * g.numpy(), rtol=1e-5, atol=1e-6)
        # The recorded (frozen) source copy and the source model did not move.
        for v, w0 in zip(model.recorded.weights, recorded_weights):
            self.assertAllClose(v, w0, atol=0, rtol=0)
        self.assertAllClose(source.get_layer("head").get_weights()[0], wo, atol=0, rtol=0)
        self.assertAllClose(model.predict(self.x, verbose=0), model.classifier.predict(self.x, verbose=0))

    def test_round_trip_export_and_mixed_precision(self):
        _, model = self.build()
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(self.x, self.y, epochs=1, verbose=0)
        reloaded = self.run_serialization_test(model, self.x)
        self.assertAllClose(reloaded.old_logits(self.x), model.old_logits(self.x), rtol=1e-6)
        self.assertEqual((reloaded.temperature, reloaded.old_weight), (2.0, 0.5))
        self.run_export_test(model, self.x)

        def build_and_compile():
            keras.utils.set_random_seed(0)
            source = recipes.build_classifier("simple_cnn", 3, (8, 8, 1), widths=(4, 4, 4))
            classifier = recipes.replace_head(source, 2, activation=None)
            model = LearningWithoutForgetting(classifier, recipes.get_head(source))
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        self.run_fit_then_export_test(build_and_compile, self.images, self.images, self.labels, batch_size=6)
        _, history = self.run_mixed_precision_test(build_and_compile, self.images, self.labels, batch_size=6)
        self.assertGreater(history.history["distillation"][0], 0.0)

    def test_errors(self):
        source = source_model()
        classifier = recipes.replace_head(source, 2)
        head = source.get_layer("head")
        message = ["`old_head`", "Dense head on 3 features"]
        self.assertRaisesValueError(message, LearningWithoutForgetting, classifier, 3)
        wide = keras.layers.Dense(2)
        wide.build((None, 5))
        self.assertRaisesValueError("`old_head`", LearningWithoutForgetting, classifier, wide)
        self.assertRaisesValueError(
            ["`temperature`", "Received: temperature=0"], LearningWithoutForgetting, classifier, head, 0
        )
        self.assertRaisesValueError(
            ["`old_weight`", "Received: old_weight=-1"], LearningWithoutForgetting, classifier, head, 2.0, -1
        )
        self.assertRaisesValueError(["`head`", "'top'"], LearningWithoutForgetting, classifier, head, head="top")
