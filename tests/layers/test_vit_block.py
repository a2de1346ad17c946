import keras
import numpy as np
import pytest

from keras_transfer.layers import ViTBlock
from tests.test_case import TestCase


class ViTBlockTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            ViTBlock,
            {"num_heads": 2, "mlp_dim": 8},
            input_shape=(2, 3, 4),
            expected_output_shape=(2, 3, 4),
            expected_num_trainable_weights=16,
            run_training=False,
            run_mixed_precision=False,
            run_export=False,
        )

    def test_equals_keras_hub_block(self):
        keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is an optional extra")
        vit = keras_hub.models.ViTBackbone(
            image_shape=(4, 4, 1), patch_size=2, num_layers=1, num_heads=2, hidden_dim=4, mlp_dim=8
        )
        reference = vit.get_layer("vit_encoder").encoder_layers[0]
        x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
        block = ViTBlock(2, 8, layer_norm_epsilon=1e-6)
        block.build(x.shape)
        block.set_weights([w * 3 + 0.1 for w in reference.get_weights()])
        reference.set_weights(block.get_weights())
        self.assertAllClose(block(x), reference(x), atol=1e-5)

    def test_frozen_block_reloads_frozen(self):
        inputs = keras.Input((3, 4))
        model = keras.Model(inputs, ViTBlock(2, 8, trainable=False)(inputs))
        path = self.get_temp_dir() + "/block.keras"
        model.save(path)
        self.assertEqual(keras.saving.load_model(path).trainable_weights, [])

    def test_errors(self):
        self.assertRaisesValueError("`num_heads` must be a positive integer", ViTBlock, 0, 8)
        self.assertRaisesValueError("`use_mha_bias` must be True or False", ViTBlock, 2, 8, use_mha_bias=1)
        self.assertRaisesValueError("dim `num_heads` divides", ViTBlock(3, 8), np.zeros((1, 2, 4)))
