import keras
import numpy as np
import pytest

from keras_transfer.datasets import load_digits
from keras_transfer.recipes import linear_evaluation
from keras_transfer.recipes import pretrain_stacked_denoising
from tests.test_case import TestCase


class StackedDenoisingTest(TestCase):
    @classmethod
    def setUpClass(cls):
        (x, y), (x_test, y_test) = load_digits(image_size=8, channels=1, seed=0)
        cls.x, cls.y, cls.x_test, cls.y_test = x[:600], y[:600], x_test, y_test

    def pretrain(self, sizes, **kwargs):
        return pretrain_stacked_denoising(self.x, sizes, epochs=kwargs.pop("epochs", 3), batch_size=64, **kwargs)

    @pytest.mark.compiled
    def test_greedy_layers_and_shapes(self):
        one, _ = self.pretrain([32])
        two, losses = self.pretrain([32, 16])
        # Greedy: training layer 2 never changes layer 1 (same seed, same first stage).
        for a, b in zip(one.layers[1].get_weights(), two.layers[1].get_weights()):
            np.testing.assert_array_equal(a, b)
        features = two.predict(self.x_test, verbose=0)
        self.assertEqual(features.shape, (len(self.x_test), 16))
        self.assertTrue(np.all((features > 0) & (features < 1)))  # sigmoid codes
        # The stack is Flatten -> Dense(32) -> Dense(16) on the pixels: its output is that composition.
        w1, b1 = two.layers[1].get_weights()
        w2, b2 = two.layers[2].get_weights()
        sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
        expected = sigmoid(sigmoid(self.x_test.reshape(len(self.x_test), -1) @ w1 + b1) @ w2 + b2)
        self.assertAllClose(features, expected, atol=1e-5)
        for first, last in losses:  # each stage reduced its reconstruction loss
            self.assertLess(last, first)

    @pytest.mark.compiled
    def test_pretrained_features_beat_the_same_stack_untrained(self):
        encoder, _ = self.pretrain([64], epochs=15, learning_rate=3e-3)
        keras.utils.set_random_seed(1)
        untrained = keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(64, activation="sigmoid")]
        )
        index = np.concatenate([np.where(self.y == c)[0][:3] for c in range(10)])  # 3 labels per class
        args = (self.x[index], self.y[index], self.x_test, self.y_test)
        pretrained = linear_evaluation(encoder, *args, num_classes=10, C=1.0)["test_accuracy"]
        baseline = linear_evaluation(untrained, *args, num_classes=10, C=1.0)["test_accuracy"]
        self.assertGreater(pretrained, baseline)

    def test_bad_arguments(self):
        x = self.x[:8]
        self.assertRaisesValueError(["`layer_sizes`", "[]"], pretrain_stacked_denoising, x, [])
        self.assertRaisesValueError(["`layer_sizes`", "[32, 0]"], pretrain_stacked_denoising, x, [32, 0])
        self.assertRaisesValueError(["`activation`", "'relu'"], pretrain_stacked_denoising, x, [4], activation="relu")
        self.assertRaisesValueError(["`epochs`", "epochs=0"], pretrain_stacked_denoising, x, [4], epochs=0)
        self.assertRaisesValueError(["`x`", "(0, 8, 8, 1)"], pretrain_stacked_denoising, x[:0], [4])
        bad = x.astype("float32")
        bad[0, 0, 0, 0] = np.nan
        self.assertRaisesValueError(["`x`", "finite"], pretrain_stacked_denoising, bad, [4])
        self.assertRaisesValueError(["`mask_rate`"], pretrain_stacked_denoising, x, [4], mask_rate=1.5, epochs=1)
