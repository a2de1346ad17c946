import numpy as np

from keras_transfer.layers import PatchEmbedding
from tests.test_case import TestCase


class PatchEmbeddingTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            PatchEmbedding,
            {"patch_size": 2, "hidden_dim": 3},
            input_shape=(2, 4, 4, 1),
            expected_output_shape=(2, 5, 3),
            expected_num_trainable_weights=4,
            run_training=False,
            run_mixed_precision=False,
            run_export=False,
        )

    def test_against_numpy(self):
        x = np.random.default_rng(0).normal(size=(2, 4, 6, 2)).astype("float32")
        layer = PatchEmbedding((2, 3), 5)
        y = np.asarray(layer(x))
        cls, positions = np.asarray(layer.class_token), np.asarray(layer.position_embedding)
        kernel, bias = (np.asarray(w) for w in layer.projection.weights)
        patches = x.reshape(2, 2, 2, 2, 3, 2).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 12)
        tokens = patches @ kernel.reshape(12, 5) + bias
        expected = np.concatenate([np.broadcast_to(cls, (2, 1, 5)), tokens], axis=1) + positions
        self.assertAllClose(y, expected, atol=1e-5)

    def test_errors(self):
        self.assertRaisesValueError("`patch_size` must be a positive int", PatchEmbedding, 0, 4)
        self.assertRaisesValueError(
            "`use_class_token` must be True or False", PatchEmbedding, 2, 4, use_class_token=None
        )
        self.assertRaisesValueError("`patch_size` must divide", PatchEmbedding(3, 4), np.zeros((1, 4, 4, 1)))
