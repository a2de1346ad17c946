import keras
import numpy as np
from sklearn.linear_model import LogisticRegression

from keras_transfer.models import SimCLR
from keras_transfer.recipes import extract_features
from keras_transfer.recipes import get_head
from keras_transfer.recipes import linear_evaluation
from keras_transfer.recipes import linear_probe_model
from tests.recipes.logistic_optimality import REFERENCE_TOL
from tests.recipes.logistic_optimality import assert_head_at_optimum
from tests.test_case import TestCase


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    centers = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    y = rng.integers(0, 3, size=n)
    return (centers[y] + rng.normal(size=(n, 4))).astype("float32"), y


class LinearEvaluationTest(TestCase):
    def setUp(self):
        super().setUp()
        self.encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")], name="enc")
        self.x_train, self.y_train = blobs(120, 0)
        self.x_test, self.y_test = blobs(60, 1)

    def test_matches_sklearn_on_the_features(self):
        before = [w.numpy() for w in self.encoder.weights]
        result = linear_evaluation(self.encoder, self.x_train, self.y_train, self.x_test, self.y_test, C=1.0)
        # Reference: scikit-learn's logistic regression on standardised frozen features.
        f_train = self.encoder.predict(self.x_train, verbose=0)
        f_test = self.encoder.predict(self.x_test, verbose=0)
        mean, std = f_train.mean(0), f_train.std(0)
        # Solved to its optimum (not sklearn's default tol=1e-4, a stop whose digits change with
        # releases): the two heads then differ only within the solvers' tolerances.
        clf = LogisticRegression(C=1.0, max_iter=20000, tol=REFERENCE_TOL).fit((f_train - mean) / std, self.y_train)
        expected = np.mean(clf.predict((f_test - mean) / std) == self.y_test)
        self.assertAllClose(result["test_accuracy"], expected, atol=1 / 60 + 1e-9)
        head = get_head(result["model"])
        assert_head_at_optimum(
            self,
            extract_features(result["model"], self.x_train),
            self.y_train,
            head.kernel.numpy(),
            head.bias.numpy(),
            C=1.0,
        )
        self.assertGreater(result["test_accuracy"], 0.8)
        self.assertEqual(result["num_features"], 6)
        for a, b in zip(before, self.encoder.weights):  # the encoder is untouched
            self.assertAllClose(b, a, atol=0)
        self.assertTrue(self.encoder.trainable)
        probs = result["model"].predict(self.x_test, verbose=0)
        self.assertAllClose(np.mean(np.argmax(probs, 1) == self.y_test), result["test_accuracy"])

    def test_accepts_ssl_models(self):
        encoder = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
        model = SimCLR(encoder, projection_dim=3)
        x = np.random.default_rng(0).normal(size=(30, 4, 4, 1)).astype("float32")
        y = np.arange(30) % 3
        result = linear_evaluation(model, x, y, x, y, C=1.0)
        self.assertEqual(result["num_features"], 5)
        self.assertEqual(result["model"].output_shape, (None, 3))

    def test_errors(self):
        args = (self.x_train, self.y_train, self.x_test, self.y_test)
        self.assertRaisesValueError(
            "`x_train` must contain at least one",
            linear_evaluation,
            self.encoder,
            self.x_train[:0],
            self.y_train[:0],
            self.x_test,
            self.y_test,
        )
        self.assertRaisesValueError(
            ["class ids in [0, 3)", "[7, 7]"],
            linear_evaluation,
            self.encoder,
            self.x_train,
            self.y_train,
            self.x_test,
            np.full(60, 7),
        )
        self.assertRaisesValueError(
            "same lengths",
            linear_evaluation,
            self.encoder,
            self.x_train,
            self.y_train[:10],
            self.x_test,
            self.y_test,
            num_classes=3,
        )
        self.assertRaisesValueError("`num_classes`", linear_evaluation, self.encoder, *args, num_classes=1)
        self.assertRaisesValueError(
            "must contain only finite", linear_evaluation, self.encoder, np.full_like(self.x_train, np.nan), *args[1:]
        )
        conv = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3)])
        self.assertRaisesValueError("(batch, features)", linear_probe_model, conv, 3)
