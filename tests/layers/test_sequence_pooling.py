import numpy as np

from keras_transfer.layers import SequencePooling
from tests.test_case import TestCase


class SequencePoolingTest(TestCase):
    def setUp(self):
        super().setUp()
        self.x = np.random.default_rng(0).normal(size=(3, 4, 5)).astype("float32")

    def test_modes_against_numpy(self):
        self.assertAllClose(SequencePooling("mean")(self.x), self.x.mean(1), atol=1e-6)
        self.assertAllClose(SequencePooling("auto")(self.x), self.x.mean(1), atol=1e-6)
        self.assertAllClose(SequencePooling("auto")(self.x[:, 0]), self.x[:, 0])
        image = np.random.default_rng(1).normal(size=(2, 3, 3, 5)).astype("float32")
        self.assertAllClose(SequencePooling("auto")(image), image.mean((1, 2)), atol=1e-6)
        self.assertAllClose(SequencePooling("first")(self.x), self.x[:, 0])
        ids = np.array([[3, 9, 1, 0], [2, 4, 7, 8], [5, 0, 0, 0]])
        self.assertAllClose(SequencePooling("argmax_token")(self.x, token_ids=ids), self.x[np.arange(3), ids.argmax(1)])

    def test_layer_basics(self):
        self.run_layer_test(
            SequencePooling,
            {"mode": "mean"},
            input_shape=(3, 4, 5),
            expected_output_shape=(3, 5),
            expected_num_trainable_weights=0,
        )

    def test_errors(self):
        self.assertRaisesValueError("`mode` must be one of", SequencePooling, "max")
        self.assertRaisesValueError("needs a (batch, length, dim) input", SequencePooling("first"), self.x[:, 0])
        self.assertRaisesValueError("`token_ids` must be passed", SequencePooling("argmax_token"), self.x)
