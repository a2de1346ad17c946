import keras
import numpy as np
import tensorflow as tf

from keras_transfer.ops import diagonal_fisher
from tests.test_case import TestCase


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logistic_reference(x, w, b, y=None):
    """Diagonal Fisher of multinomial logistic regression in closed form.

    d log p(c | x) / dW = outer(x, e_c - p), d / db = e_c - p. Empirical: c = the label;
    expected: the average over c ~ p(. | x).
    """
    x = x.astype("float64")
    p = softmax(x @ w + b)
    k = p.shape[1]
    fw, fb = np.zeros_like(w), np.zeros_like(b)
    for n in range(len(x)):
        classes = [(y[n], 1.0)] if y is not None else [(c, p[n, c]) for c in range(k)]
        for c, weight in classes:
            r = np.eye(k)[c] - p[n]
            fw += weight * np.outer(x[n], r) ** 2
            fb += weight * r**2
    return fw / len(x), fb / len(x)


class DiagonalFisherTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.x = rng.normal(size=(13, 4)).astype("float32")
        cls.y = rng.integers(0, 3, size=13)
        cls.w = rng.normal(size=(4, 3))
        cls.b = rng.normal(size=3)

    def logistic(self, activation=None):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=activation)])
        model.set_weights([self.w, self.b])
        return model

    def test_empirical_fisher_matches_closed_form(self):
        fw, fb = logistic_reference(self.x, self.w, self.b, self.y)
        for batch_size in (4, 32):  # a partial last batch; one batch
            fisher = diagonal_fisher(self.logistic(), self.x, self.y, batch_size=batch_size)
            self.assertAllClose(fisher[0], fw, rtol=1e-4, atol=1e-6)
            self.assertAllClose(fisher[1], fb, rtol=1e-4, atol=1e-6)
        # Softmax outputs are detected (probabilities, not logits); one-hot labels are accepted.
        fisher = diagonal_fisher(self.logistic("softmax"), self.x, np.eye(3)[self.y])
        self.assertAllClose(fisher[0], fw, rtol=1e-4, atol=1e-6)
        # Per-example squares averaged, not the square of the mean gradient.
        p = softmax(self.x @ self.w + self.b)
        squared_mean = np.mean(np.eye(3)[self.y] - p, axis=0) ** 2
        self.assertNotAllClose(fisher[1], squared_mean, rtol=1e-2)

    def test_expected_fisher_matches_closed_form(self):
        fw, fb = logistic_reference(self.x, self.w, self.b)
        fisher = diagonal_fisher(self.logistic(), self.x, batch_size=5)
        self.assertAllClose(fisher[0], fw, rtol=1e-4, atol=1e-6)
        self.assertAllClose(fisher[1], fb, rtol=1e-4, atol=1e-6)
        # The bias entry is p (1 - p) averaged over the examples.
        p = softmax(self.x @ self.w + self.b)
        self.assertAllClose(fisher[1], np.mean(p * (1 - p), axis=0), rtol=1e-4)

    def test_subset_of_variables_and_a_cnn(self):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((6, 6, 1)),
                keras.layers.Conv2D(2, 3, name="conv"),
                keras.layers.BatchNormalization(),
                keras.layers.Flatten(),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(3, name="head"),
            ]
        )
        x = np.random.default_rng(1).normal(size=(5, 6, 6, 1)).astype("float32")
        y = np.array([0, 1, 2, 1, 0])
        kernel = model.get_layer("conv").kernel
        (fisher,) = diagonal_fisher(model, x, y, variables=[kernel])
        # Reference: one example at a time, gradients by GradientTape (inference mode).
        expected = np.zeros(kernel.shape)
        for n in range(5):
            with tf.GradientTape() as tape:
                log_p = tf.nn.log_softmax(model(x[n : n + 1], training=False))[0, y[n]]
            expected += tape.gradient(log_p, kernel).numpy() ** 2 / 5
        self.assertAllClose(fisher, expected, rtol=1e-4, atol=1e-7)
        self.assertTrue(np.all(fisher >= 0))

    def test_errors(self):
        model = self.logistic()
        self.assertRaisesValueError(["`batch_size`", "Received: batch_size=0"], diagonal_fisher, model, self.x, None, 0)
        self.assertRaisesValueError("one label per example", diagonal_fisher, model, self.x, self.y[:5])
        self.assertRaisesValueError("class ids in [0, 3)", diagonal_fisher, model, self.x, self.y + 3)
        self.assertRaisesValueError("at least one example", diagonal_fisher, model, self.x[:0])
        nan_x = self.x.copy()
        nan_x[0, 0] = np.nan
        self.assertRaisesValueError(["`x` must contain only finite values", "1 NaN"], diagonal_fisher, model, nan_x)
        single = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        self.assertRaisesValueError("num_classes >= 2", diagonal_fisher, single, self.x)
        unused = keras.Variable(np.zeros(2, "float32"))
        self.assertRaisesValueError("gets no gradient", diagonal_fisher, model, self.x, self.y, variables=[unused])
