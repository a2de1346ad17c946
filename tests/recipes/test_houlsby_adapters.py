"""`add_adapters(kind="houlsby")` on a real keras-hub BertBackbone (tiny, random, offline)."""

import os
import unittest

import keras
import numpy as np

from keras_transfer.layers import HoulsbyTransformerEncoder
from keras_transfer.recipes import adapter_parameter_report
from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import fold_adapters
from keras_transfer.recipes import get_adapter_weights
from keras_transfer.recipes import load_adapter_weights
from keras_transfer.recipes import merge_lora
from keras_transfer.recipes import save_adapter_weights
from tests.test_case import TestCase

try:
    import keras_hub
except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
    keras_hub = None

LAYERS, HIDDEN, BOTTLENECK = 2, 8, 3


def bert_backbone():
    keras.utils.set_random_seed(0)
    return keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=LAYERS,
        num_heads=2,
        hidden_dim=HIDDEN,
        intermediate_dim=16,
        max_sequence_length=8,
    )


def bert_classifier(backbone, classes=3):
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in backbone.input}
    pooled = backbone(inputs)["pooled_output"]
    return keras.Model(inputs, keras.layers.Dense(classes, name="head")(pooled))


def bert_inputs(batch=6, seed=0):
    rng = np.random.default_rng(seed)
    padding_mask = np.ones((batch, 8), "int32")
    padding_mask[::2, 5:] = 0
    return {
        "token_ids": (rng.integers(1, 50, (batch, 8)) * padding_mask).astype("int32"),
        "segment_ids": np.zeros((batch, 8), "int32"),
        "padding_mask": padding_mask,
    }


def randomize_adapters(model, seed):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "_adapter/" in variable.path:
            variable.assign(rng.normal(scale=0.3, size=variable.shape).astype("float32"))


def houlsby_blocks(model):
    return [layer for layer in model.layers if isinstance(layer, HoulsbyTransformerEncoder)]


@unittest.skipIf(keras_hub is None, "keras-hub is not installed (optional extra `hub`)")
class HoulsbyAdaptersTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.backbone = bert_backbone()
        cls.x = bert_inputs()
        cls.y = np.array([0, 1, 2, 0, 1, 2])
        cls.expected = cls.backbone.predict(cls.x, verbose=0)

    def adapt(self, model=None, **kwargs):
        kwargs.setdefault("bottleneck_dim", BOTTLENECK)
        model = self.backbone if model is None else model
        return add_adapters(model, keras_hub.layers.TransformerEncoder, "houlsby", **kwargs)

    def test_identity_at_insertion_on_bert_backbone(self):
        original = [w.copy() for w in self.backbone.get_weights()]
        adapted = self.adapt()
        self.assertIsInstance(adapted, keras.Model)
        self.assertEqual([b.name for b in houlsby_blocks(adapted)], ["transformer_layer_0", "transformer_layer_1"])
        actual = adapted.predict(self.x, verbose=0)
        for key in ("sequence_output", "pooled_output"):
            self.assertAllClose(actual[key], self.expected[key], atol=1e-5, rtol=0)
        for before, after in zip(original, self.backbone.get_weights()):
            self.assertTrue(np.array_equal(before, after))  # the original is untouched
        # Houlsby et al.'s near-identity initialisation (std 1e-3 in both projections).
        near = self.adapt(init_scale=1e-3).predict(self.x, verbose=0)
        for key in ("sequence_output", "pooled_output"):
            self.assertAllClose(near[key], self.expected[key], atol=1e-4, rtol=0)
        self.assertNotAllClose(near["sequence_output"], self.expected["sequence_output"], atol=0, rtol=0)

    def test_normalize_first_blocks(self):
        inputs = keras.Input((6, HIDDEN))
        x = inputs
        for i in range(2):
            x = keras_hub.layers.TransformerEncoder(16, 2, normalize_first=True, name=f"encoder_{i}")(x)
        model = keras.Model(inputs, x)
        tokens = np.random.default_rng(1).normal(size=(3, 6, HIDDEN)).astype("float32")
        adapted = self.adapt(model)
        self.assertTrue(all(block.normalize_first for block in houlsby_blocks(adapted)))
        self.assertAllClose(adapted.predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-6)

    def test_parameter_report_counts_two_adapters_per_layer(self):
        report = adapter_parameter_report(self.adapt())
        per_adapter = 2 * HIDDEN * BOTTLENECK + HIDDEN + BOTTLENECK
        self.assertEqual(report["added_params"], 2 * LAYERS * per_adapter)
        self.assertEqual(report["by_role"]["adapter"], 2 * LAYERS * per_adapter)
        # The embedding LayerNorm and two LayerNorms per block (gamma, beta).
        self.assertEqual(report["by_role"]["normalization"], (1 + 2 * LAYERS) * 2 * HIDDEN)
        self.assertEqual(report["by_role"]["head"], HIDDEN * HIDDEN + HIDDEN)  # pooled_dense
        self.assertEqual(report["by_role"]["other"], 0)
        self.assertEqual(
            [row["name"] for row in report["adapters"]],
            [f"transformer_layer_{i}/{part}_adapter" for i in range(LAYERS) for part in ("attention", "feedforward")],
        )
        base = sum(int(np.prod(w.shape)) for w in self.backbone.weights)
        self.assertEqual(report["total_params"], base + 2 * LAYERS * per_adapter)
        without_norms = adapter_parameter_report(self.adapt(train_normalization=False))
        self.assertEqual(without_norms["by_role"]["normalization"], 0)

    def test_fit_trains_only_adapters_layer_norms_and_head(self):
        adapted = self.adapt(model=bert_classifier(self.backbone))
        trainable_ids = {id(v) for v in adapted.trainable_weights}
        for variable in adapted.trainable_weights:
            last = variable.path.split("/")[-2]
            self.assertTrue(
                "_adapter" in variable.path or "layer_norm" in last or last == "head", f"{variable.path} trains"
            )
        frozen = [v for v in adapted.weights if id(v) not in trainable_ids]
        self.assertGreater(len(frozen), 20)
        adapted.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        self.run_fit_test(adapted, self.x, self.y, batch_size=6, steps=2, frozen=frozen)

    def test_keras_round_trip_and_export(self):
        adapted = self.adapt(model=bert_classifier(self.backbone))
        randomize_adapters(adapted, seed=3)
        reloaded = self.run_serialization_test(adapted, self.x, atol=1e-6)
        self.assertEqual([w.path for w in reloaded.trainable_weights], [w.path for w in adapted.trainable_weights])
        self.run_export_test(adapted, self.x)

    def test_per_task_adapter_weight_files(self):
        adapted = self.adapt(model=bert_classifier(self.backbone))
        keys = set(get_adapter_weights(adapted))
        # Keras numbers default names per process ("bert_backbone_8" after other tests built some).
        prefix = self.backbone.name
        self.assertIn(f"{prefix}/transformer_layer_0/attention_adapter/up_kernel", keys)
        self.assertIn(f"{prefix}/transformer_layer_1/feedforward_layer_norm/gamma", keys)
        self.assertNotIn(f"{prefix}/transformer_layer_0/feedforward_output_dense/kernel", keys)
        randomize_adapters(adapted, seed=4)
        task_a = adapted.predict(self.x, verbose=0)
        path = save_adapter_weights(adapted, os.path.join(self.get_temp_dir(), "task_a.npz"))
        other = self.adapt(model=bert_classifier(self.backbone))
        other.get_layer("head").set_weights(adapted.get_layer("head").get_weights())
        self.assertNotAllClose(other.predict(self.x, verbose=0), task_a)
        load_adapter_weights(other, path)
        self.assertAllClose(other.predict(self.x, verbose=0), task_a, atol=1e-6)

    def test_fold_linear_adapters_and_refuse_non_linear(self):
        linear = self.adapt(activation=None)
        randomize_adapters(linear, seed=5)
        folded = fold_adapters(linear)
        self.assertFalse(any(isinstance(layer, HoulsbyTransformerEncoder) for layer in folded.layers))
        self.assertEqual(
            [type(layer).__name__ for layer in folded.layers if "transformer" in layer.name],
            ["TransformerEncoder", "TransformerEncoder"],
        )
        self.assertEqual(len(folded.weights), len(self.backbone.weights))
        actual, expected = folded.predict(self.x, verbose=0), linear.predict(self.x, verbose=0)
        for key in ("sequence_output", "pooled_output"):
            self.assertAllClose(actual[key], expected[key], atol=1e-5, rtol=1e-5)
            self.assertNotAllClose(actual[key], self.expected[key], atol=1e-3)
        for kwargs in ({}, {"activation": None, "use_layer_norm": True}):
            self.assertRaisesValueError(["cannot be folded", "transformer_layer_"], fold_adapters, self.adapt(**kwargs))

    def test_invalid_targets(self):
        self.assertRaisesValueError(
            ["keras_hub.layers.TransformerEncoder", "pooled_dense"],
            add_adapters,
            self.backbone,
            "pooled_dense",
            "houlsby",
            bottleneck_dim=2,
        )
        self.assertRaisesValueError(["bottleneck_dim=9", "hidden size 8"], self.adapt, bottleneck_dim=9)
        self.assertRaisesValueError("already a HoulsbyTransformerEncoder", self.adapt, self.adapt(), bottleneck_dim=2)

    def test_adding_a_head_to_an_adapted_model_keeps_the_blocks_frozen(self):
        adapted = self.adapt()
        again = add_adapters(adapted, "pooled_dense", "bottleneck", bottleneck_dim=2)
        expected = {w.path for w in adapted.trainable_weights} | {
            w.path for w in again.get_layer("pooled_dense_adapter").weights
        }
        self.assertEqual({w.path for w in again.trainable_weights}, expected)

    def test_lora_on_the_head_then_merge_keeps_the_blocks_frozen(self):
        adapted = self.adapt()
        lora = add_adapters(adapted, "pooled_dense", "lora", rank=2)
        block_trainable = {w.path for w in adapted.trainable_weights if "transformer_layer" in w.path}
        self.assertEqual({w.path for w in lora.trainable_weights if "transformer_layer" in w.path}, block_trainable)
        merged = merge_lora(lora)
        self.assertEqual({w.path for w in merged.trainable_weights if "transformer_layer" in w.path}, block_trainable)
        actual, expected = merged.predict(self.x, verbose=0), lora.predict(self.x, verbose=0)
        self.assertAllClose(actual["pooled_output"], expected["pooled_output"], atol=1e-6)
        self.assertRaisesValueError(
            ["inside HoulsbyTransformerEncoder", "query"], add_adapters, adapted, "query", "lora", rank=2
        )
