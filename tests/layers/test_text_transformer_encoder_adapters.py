"""`TextTransformerEncoder(adapter_dim=...)`: two Houlsby adapters per block."""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import TextTransformerEncoder
from tests.layers.test_text_transformer_encoder import numpy_encoder
from tests.layers.test_text_transformer_encoder import padded_ids
from tests.test_case import TestCase

KWARGS = {"vocabulary_size": 20, "sequence_length": 7, "embedding_dim": 8, "num_heads": 2, "intermediate_dim": 16}


class TextTransformerEncoderAdaptersTest(TestCase):
    def setUp(self):
        super().setUp()
        self.ids = padded_ids()

    def test_two_adapters_per_block_match_numpy(self):
        layer = TextTransformerEncoder(**KWARGS, num_layers=2, adapter_dim=3)
        layer(self.ids)
        self.assertLen(layer.attention_adapters, 2)
        self.assertLen(layer.mlp_adapters, 2)
        rng = np.random.default_rng(1)
        for adapter in layer.attention_adapters + layer.mlp_adapters:
            for variable in adapter.weights:
                variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))
        self.assertAllClose(layer(self.ids), numpy_encoder(layer, self.ids), atol=1e-5, rtol=1e-5)

    def test_identity_at_insertion(self):
        plain = TextTransformerEncoder(**KWARGS, num_layers=2)
        expected = plain(self.ids)
        adapted = TextTransformerEncoder(**KWARGS, num_layers=2, adapter_dim=3)
        adapted(self.ids)
        adapter_ids = {id(v) for a in adapted.attention_adapters + adapted.mlp_adapters for v in a.weights}
        base = [v for v in adapted.weights if id(v) not in adapter_ids]
        relative = lambda variables: [v.path.split("/", 1)[1] for v in variables]  # noqa: E731
        self.assertEqual(relative(base), relative(plain.weights))
        for variable, value in zip(base, plain.get_weights()):
            variable.assign(value)
        self.assertAllClose(adapted(self.ids), expected, atol=1e-6)
        per_adapter = 2 * 8 * 3 + 8 + 3
        self.assertEqual(adapted.count_params() - plain.count_params(), 2 * 2 * per_adapter)

    def test_layer_basics_and_round_trip(self):
        # No fit steps here: with zero-initialised up-projections the down-projections get no gradient in
        # the first step, and whether they move in the second depends on which ReLU units the random
        # initialisation leaves active (all inactive for a tiny adapter on Keras 3.13.2). The gradient
        # paths are checked exactly in `test_gradients_reach_every_adapter_weight`.
        layer = self.run_layer_test(
            TextTransformerEncoder,
            {**KWARGS, "num_layers": 1, "adapter_dim": 2},
            input_shape=(4, 7),
            expected_output_shape=(4, 8),
            input_data=self.ids.astype("float32"),
            expected_num_trainable_weights=2 + 4 + 8 + 4 + 2 + 2 * 4,
            run_training=False,
        )
        self.assertIsNotNone(layer)
        inputs = keras.Input((7,), dtype="int32")
        encoder = TextTransformerEncoder(**KWARGS, num_layers=1, adapter_dim=2)
        model = keras.Model(inputs, encoder(inputs))
        _randomise_adapters(encoder)
        self.run_serialization_test(model, self.ids)
        self.run_export_test(model, self.ids)

    def test_gradients_reach_every_adapter_weight(self):
        layer = TextTransformerEncoder(**KWARGS, num_layers=1, adapter_dim=2)
        layer(self.ids)
        adapters = layer.attention_adapters + layer.mlp_adapters
        down = [v for a in adapters for v in (a.down_kernel, a.down_bias)]
        up = [v for a in adapters for v in (a.up_kernel, a.up_bias)]
        # At insertion (up-projection zero) the down-projections get exactly zero gradient: d/dW_down of
        # relu(x W_down) W_up is gated by W_up. The up-projections get a gradient at once.
        zero_down, nonzero_up = _gradients(layer, self.ids, down), _gradients(layer, self.ids, up)
        for variable, grad in zip(down, zero_down):
            self.assertEqual(float(np.abs(grad).max()), 0.0, variable.path)
        for variable, grad in zip(up, nonzero_up):
            self.assertGreater(float(np.abs(grad).max()), 0.0, variable.path)
        _randomise_adapters(layer)  # once trained, every adapter weight gets a gradient
        for variable, grad in zip(down + up, _gradients(layer, self.ids, down + up)):
            self.assertGreater(float(np.abs(grad).max()), 0.0, variable.path)

    def test_configs_without_adapter_dim_still_load(self):
        layer = TextTransformerEncoder(**KWARGS, num_layers=1)
        config = layer.get_config()
        self.assertIsNone(config["adapter_dim"])
        del config["adapter_dim"]  # a config written before the option existed
        restored = TextTransformerEncoder.from_config(config)
        self.assertIsNone(restored.adapter_dim)
        self.assertEqual(restored.get_config(), layer.get_config())
        inputs = keras.Input((7,), dtype="int32")
        model = keras.Model(inputs, TextTransformerEncoder(**KWARGS, num_layers=1)(inputs))
        self.run_serialization_test(model, self.ids)

    def test_invalid_adapter_dim(self):
        self.assertRaisesValueError("adapter_dim", TextTransformerEncoder, **KWARGS, adapter_dim=0)
        self.assertRaisesValueError("at most `embedding_dim`", TextTransformerEncoder, **KWARGS, adapter_dim=9)


def _randomise_adapters(layer):
    """Random adapter weights with positive down-biases (active ReLU units), as after some training."""
    rng = np.random.default_rng(3)
    for adapter in layer.attention_adapters + layer.mlp_adapters:
        for variable in adapter.weights:
            value = rng.normal(scale=0.5, size=variable.shape)
            variable.assign((np.abs(value) + 0.5 if variable is adapter.down_bias else value).astype("float32"))


def _gradients(layer, ids, variables):
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(keras.ops.square(layer(ids)))
    return [keras.ops.convert_to_numpy(g) for g in tape.gradient(loss, variables)]
