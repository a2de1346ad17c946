import subprocess
import sys
import unittest

import keras
import numpy as np

from keras_transfer.layers import HoulsbyTransformerEncoder
from tests.test_case import TestCase

try:
    import keras_hub
except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
    keras_hub = None


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def numpy_block(x, w, padding_mask, normalize_first, eps=1e-5):
    """A transformer encoder block with Houlsby adapters, written from the paper (Fig. 2).

    `w` maps keras-hub's weight paths (without the block name) to arrays; ReLU feed-forward,
    ReLU adapters, inference mode (no dropout).
    """
    x = x.astype("float64")
    relu = lambda z: np.maximum(z, 0.0)  # noqa: E731

    def adapter(h, name):
        down = relu(h @ w[f"{name}/down_kernel"] + w[f"{name}/down_bias"])
        return h + down @ w[f"{name}/up_kernel"] + w[f"{name}/up_bias"]

    def attention(h):
        q, k, v = (
            np.einsum("bsd,dhk->bshk", h, w[f"self_attention_layer/{n}/kernel"]) + w[f"self_attention_layer/{n}/bias"]
            for n in ("query", "key", "value")
        )
        scores = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])
        scores = np.where(padding_mask[:, None, None, :], scores, -1e9)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = np.einsum("bhqs,bshk->bqhk", probs, v)
        out = w["self_attention_layer/attention_output"]
        return np.einsum("bqhk,hkd->bqd", context, out["kernel"]) + out["bias"]

    def norm(h, name):
        return layer_norm(h, w[f"{name}/gamma"], w[f"{name}/beta"], eps)

    h = norm(x, "self_attention_layer_norm") if normalize_first else x
    x = x + adapter(attention(h), "attention_adapter")
    if not normalize_first:
        x = norm(x, "self_attention_layer_norm")
    h = norm(x, "feedforward_layer_norm") if normalize_first else x
    h = relu(h @ w["feedforward_intermediate_dense/kernel"] + w["feedforward_intermediate_dense/bias"])
    h = h @ w["feedforward_output_dense/kernel"] + w["feedforward_output_dense/bias"]
    x = x + adapter(h, "feedforward_adapter")
    if not normalize_first:
        x = norm(x, "feedforward_layer_norm")
    return x


def weights_by_path(block):
    out = {}
    for variable in block.weights:
        path = variable.path.split("/", 1)[1]
        out[path] = np.asarray(variable.numpy(), dtype="float64")
    out["self_attention_layer/attention_output"] = {
        "kernel": out["self_attention_layer/attention_output/kernel"],
        "bias": out["self_attention_layer/attention_output/bias"],
    }
    return out


def randomize_adapters(block, rng, scale=0.5):
    for adapter in (block.attention_adapter, block.feedforward_adapter):
        for variable in adapter.weights:
            variable.assign(rng.normal(scale=scale, size=variable.shape).astype("float32"))


class ImportWithoutKerasHubTest(TestCase):
    def test_module_imports_and_fails_clearly_without_keras_hub(self):
        code = (
            "import sys; sys.modules['keras_hub'] = None\n"
            "import keras_transfer\n"
            "try:\n"
            "    keras_transfer.layers.HoulsbyTransformerEncoder(16, 2)\n"
            "except ImportError as error:\n"
            "    print('ImportError:', error)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertIn("ImportError: `HoulsbyTransformerEncoder` needs keras-hub", result.stdout)


@unittest.skipIf(keras_hub is None, "keras-hub is not installed (optional extra `hub`)")
class HoulsbyTransformerEncoderTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(2, 5, 8)).astype("float32")
        self.padding_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)

    def test_layer_basics(self):
        self.run_layer_test(
            HoulsbyTransformerEncoder,
            {"intermediate_dim": 16, "num_heads": 2, "bottleneck_dim": 3},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=24,  # 16 of keras-hub's block + 2 x 4 adapter weights
            expected_num_non_trainable_weights=0,
        )

    def test_matches_numpy_reference_for_both_layer_norm_placements(self):
        rng = np.random.default_rng(1)
        for normalize_first in (False, True):
            with self.subTest(normalize_first=normalize_first):
                block = HoulsbyTransformerEncoder(16, 2, bottleneck_dim=3, normalize_first=normalize_first)
                block(self.x)
                randomize_adapters(block, rng)
                actual = block(self.x, padding_mask=self.padding_mask)
                expected = numpy_block(self.x, weights_by_path(block), self.padding_mask, normalize_first)
                self.assertAllClose(actual, expected, atol=1e-5, rtol=1e-5)

    def test_identity_at_insertion_and_near_identity_init(self):
        for normalize_first in (False, True):
            with self.subTest(normalize_first=normalize_first):
                plain = keras_hub.layers.TransformerEncoder(16, 2, normalize_first=normalize_first)
                expected = plain(self.x, padding_mask=self.padding_mask)
                block = HoulsbyTransformerEncoder(16, 2, bottleneck_dim=3, normalize_first=normalize_first)
                block(self.x)
                block.load_encoder_weights(plain)
                self.assertAllClose(block(self.x, padding_mask=self.padding_mask), expected, atol=1e-6)
                near = HoulsbyTransformerEncoder(
                    16, 2, bottleneck_dim=3, normalize_first=normalize_first, adapter_init_scale=1e-3
                )
                near(self.x)
                near.load_encoder_weights(plain)
                # Weights of std 1e-3 in both projections: a perturbation of order 1e-6 here.
                self.assertAllClose(near(self.x, padding_mask=self.padding_mask), expected, atol=1e-4)
                self.assertNotAllClose(near(self.x, padding_mask=self.padding_mask), expected, atol=0, rtol=0)

    def test_attention_scores_and_masks_pass_through(self):
        block = HoulsbyTransformerEncoder(16, 2, bottleneck_dim=3)
        outputs, scores = block(self.x, padding_mask=self.padding_mask, return_attention_scores=True)
        self.assertEqual(tuple(outputs.shape), (2, 5, 8))
        self.assertEqual(tuple(scores.shape), (2, 2, 5, 5))
        self.assertAllClose(np.asarray(scores)[1, :, :, 3:], np.zeros((2, 5, 2)))

    def test_base_trainable_survives_round_trip(self):
        for base_trainable, expected in (("layer_norms", 12), ("none", 8), ("all", 24)):
            with self.subTest(base_trainable=base_trainable):
                inputs = keras.Input((5, 8))
                block = HoulsbyTransformerEncoder(16, 2, bottleneck_dim=3, base_trainable=base_trainable)
                model = keras.Model(inputs, block(inputs))
                self.assertLen(model.trainable_weights, expected)
                reloaded = self.run_serialization_test(model, self.x)
                self.assertEqual(
                    [w.path for w in reloaded.trainable_weights], [w.path for w in model.trainable_weights]
                )

    def test_linear_adapters_fold_into_the_output_projections(self):
        for normalize_first in (False, True):
            with self.subTest(normalize_first=normalize_first):
                block = HoulsbyTransformerEncoder(
                    16, 2, bottleneck_dim=3, adapter_activation=None, normalize_first=normalize_first
                )
                block(self.x)
                randomize_adapters(block, np.random.default_rng(2))
                plain = keras_hub.layers.TransformerEncoder.from_config(block.encoder_config())
                plain(self.x)
                plain.set_weights(block.merged_encoder_weights())
                self.assertAllClose(
                    plain(self.x, padding_mask=self.padding_mask),
                    block(self.x, padding_mask=self.padding_mask),
                    atol=1e-5,
                    rtol=1e-5,
                )

    def test_non_linear_adapters_refuse_to_fold(self):
        for kwargs, fragment in (({}, "non-linearity ('relu')"), ({"adapter_use_layer_norm": True}, "layer norm")):
            block = HoulsbyTransformerEncoder(16, 2, bottleneck_dim=3, **{"adapter_activation": "relu", **kwargs})
            block(self.x)
            self.assertRaisesValueError([fragment, "cannot be folded"], block.merged_encoder_weights)

    def test_invalid_arguments(self):
        self.assertRaisesValueError("bottleneck_dim", HoulsbyTransformerEncoder, 16, 2, bottleneck_dim=0)
        self.assertRaisesValueError("adapter_init_scale", HoulsbyTransformerEncoder, 16, 2, adapter_init_scale=-1.0)
        self.assertRaisesValueError("base_trainable", HoulsbyTransformerEncoder, 16, 2, base_trainable="some")
        self.assertRaisesValueError("bottleneck_dim", HoulsbyTransformerEncoder(16, 2, bottleneck_dim=9), self.x)

    def test_load_encoder_weights_checks_the_configuration(self):
        block = HoulsbyTransformerEncoder(16, 2, bottleneck_dim=3)
        block(self.x)
        other = keras_hub.layers.TransformerEncoder(12, 2)
        other(self.x)
        self.assertRaisesValueError("configuration", block.load_encoder_weights, other)
