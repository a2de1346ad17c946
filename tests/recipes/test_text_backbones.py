"""The fine-tuning recipes on text backbones: TextTransformerEncoder models and keras-hub's BertBackbone."""

import re
import unittest

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import backbone_blocks
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import compile_for_fine_tuning
from keras_transfer.recipes import feature_extractor
from keras_transfer.recipes import fine_tune
from keras_transfer.recipes import freeze_backbone
from keras_transfer.recipes import get_backbone
from keras_transfer.recipes import get_head
from keras_transfer.recipes import learning_rate_multipliers
from keras_transfer.recipes import merge_lora
from keras_transfer.recipes import replace_head
from keras_transfer.recipes import select_blocks
from keras_transfer.recipes import unfreeze_backbone
from tests.test_case import TestCase

try:
    import keras_hub
except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
    keras_hub = None

VOCABULARY, LENGTH, WIDTH = 20, 6, 8


def token_task(n=32, seed=0):
    """Token ids (0 = padding at the end) and labels: 1 when token 5 appears."""
    rng = np.random.default_rng(seed)
    x = rng.integers(2, VOCABULARY, (n, LENGTH)).astype("int32")
    lengths = rng.integers(3, LENGTH + 1, n)
    x[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    x[: n // 2, 0] = 5
    x[n // 2 :][x[n // 2 :] == 5] = 6
    y = (x == 5).any(axis=1).astype("int64")
    return x, y


def encoder(pooling="mean"):
    return TextTransformerEncoder(
        VOCABULARY, LENGTH, embedding_dim=WIDTH, num_layers=2, num_heads=2, intermediate_dim=16, pooling=pooling
    )


def snapshot(variables):
    return {v.path: np.array(v.numpy()) for v in variables}


def changed(before, variables):
    return {v.path for v in variables if not np.array_equal(before[v.path], v.numpy())}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class TextClassifierTest(TestCase):
    def test_graph_head_and_predictions(self):
        text = encoder()
        model = build_classifier(text, num_classes=3, dropout=0.0)
        self.assertEqual([layer.name for layer in model.layers], ["token_ids", "backbone", "head"])
        self.assertEqual(model.name, f"{text.name}_classifier")
        self.assertEqual(model.input.dtype, "int64")  # word_tokenizer's ids, as users send them
        head = get_head(model)
        self.assertEqual(tuple(head.kernel.shape), (WIDTH, 3))
        self.assertAllClose(head.bias, np.zeros(3), atol=0)  # a fresh head
        x, _ = token_task()
        features = keras.ops.convert_to_numpy(text(x))
        expected = softmax(features @ head.kernel.numpy() + head.bias.numpy())
        self.assertAllClose(model.predict(x, verbose=0), expected, atol=1e-5)
        new = replace_head(model, num_classes=5)
        self.assertEqual(tuple(get_head(new).kernel.shape), (WIDTH, 5))
        self.assertAllClose(feature_extractor(new).predict(x, verbose=0), features, atol=1e-5)

    def test_masked_pooling_of_a_sequence_output(self):
        text = encoder(pooling=None)
        ids = keras.Input((LENGTH,), dtype="int32")
        backbone = keras.Model(ids, text(ids), name="sequence_encoder")
        x, _ = token_task()
        sequence = keras.ops.convert_to_numpy(text(x))
        mask = (x != 0)[:, :, None]
        for pooling, expected in (
            ("avg", (sequence * mask).sum(axis=1) / mask.sum(axis=1)),
            ("max", np.where(mask, sequence, -np.inf).max(axis=1)),
        ):
            model = build_classifier(backbone, 2, pooling=pooling)
            self.assertEqual([layer.name for layer in model.layers][-3:], ["pool", "dropout", "head"])
            self.assertAllClose(feature_extractor(model).predict(x, verbose=0), expected, atol=1e-5)

    def test_errors(self):
        self.assertRaisesValueError(["`input_shape`", "input_shape=(6, 1)"], build_classifier, encoder(), 2, (6, 1))
        self.assertRaisesValueError(
            ["`weights`", "weights='imagenet'"], build_classifier, encoder(), 2, weights="imagenet"
        )
        self.assertRaisesValueError(["`pooling`", "pooling='sum'"], build_classifier, encoder(), 2, pooling="sum")

    def test_fine_tune_names_data_that_cannot_feed_the_model(self):
        model = build_classifier(encoder(), 2)
        x, y = token_task(16)
        self.assertRaisesValueError(
            ["`train_data` must have shape (n, 6)", "(16, 9)", "sequence_length=6"], fine_tune, model,
            np.ones((16, 9), "int32"), y, verbose=0,
        )  # fmt: skip
        self.assertRaisesValueError(
            ["`train_data` must hold numbers", "word_tokenizer"], fine_tune, model, np.array(["a b"] * 16), y
        )
        self.assertRaisesValueError(
            ["`train_data` must hold integer ids", "int64"], fine_tune, model, x + 0.5, y, verbose=0
        )
        self.assertRaisesValueError(
            ["`validation_data` must have shape (n, 6)"], fine_tune, model, x, y,
            validation_data=(x[:, :4], y), verbose=0,
        )  # fmt: skip


class TextBlocksTest(TestCase):
    def test_transformer_blocks(self):
        model = build_classifier(encoder(), 2)
        blocks = backbone_blocks(get_backbone(model), own_variables=True)
        self.assertEqual(list(blocks), ["stem", "block0", "block1", "top"])
        self.assertEqual(
            [getattr(m, "name", None) or m.path.split("/")[-1] for m in blocks["stem"]],
            ["position_embedding", "token_embedding"],
        )
        self.assertEqual(
            [layer.name for layer in blocks["block1"]],
            [f"block1_{s}" for s in ("ln1", "attention", "ln2", "mlp_in", "mlp_out")],
        )
        self.assertEqual(select_blocks(get_backbone(model), "last"), ["block1", "top"])
        self.assertEqual(select_blocks(get_backbone(model), "first"), ["stem", "block0"])

    def test_frozen_weights_stay_and_trainable_ones_move(self):
        x, y = token_task()
        model = build_classifier(encoder(), 2, dropout=0.0)
        backbone = get_backbone(model)
        for blocks, moving in (
            ("last", ("block1_", "final_ln")),
            ("first", ("position_embedding", "token_embedding", "block0_")),
        ):
            with self.subTest(blocks=blocks):
                unfreeze_backbone(model, blocks=blocks)
                compile_for_fine_tuning(model, learning_rate=1e-2)
                before = snapshot(model.weights)
                model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
                moved = changed(before, backbone.weights)
                expected = {v.path for v in backbone.weights if any(m in v.path for m in moving)}
                self.assertEqual(moved, expected)
                self.assertEqual(changed(before, get_head(model).weights), {"head/kernel", "head/bias"})
        freeze_backbone(model)
        self.assertEqual([w.path for w in model.trainable_weights], ["head/kernel", "head/bias"])
        unfreeze_backbone(model, top_n_layers=2)
        self.assertEqual(
            [w.path.split("/", 1)[1] for w in model.trainable_weights][:4],
            ["block1_mlp_out/kernel", "block1_mlp_out/bias", "final_ln/gamma", "final_ln/beta"],
        )

    def test_discriminative_rates_follow_the_blocks(self):
        x, y = token_task()
        model = build_classifier(encoder(), 2, dropout=0.0)
        pairs = learning_rate_multipliers(model, 1.0, layer_decay=0.5)
        by_path = {}
        for variable in get_backbone(model).weights:
            for pattern, multiplier in pairs:
                if re.search(pattern, variable.path):  # the first matching pair, as the optimizer reads them
                    by_path[variable.path] = multiplier
                    break
        self.assertEqual(len(by_path), len(get_backbone(model).weights))
        expected = {"final_ln": 1.0, "block1_": 0.5, "block0_": 0.25, "token_embedding": 0.125, "position": 0.125}
        for path, multiplier in by_path.items():
            self.assertEqual(multiplier, next(v for k, v in expected.items() if k in path), path)
        # One SGD step: each variable moves by multiplier x the plain step.
        start = [np.array(w) for w in model.get_weights()]
        steps = {}
        for decay in (None, 0.5):
            model.set_weights(start)
            unfreeze_backbone(model)
            compile_for_fine_tuning(model, learning_rate=0.1, optimizer=keras.optimizers.SGD(), layer_decay=decay)
            model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
            steps[decay] = {w.path: w.numpy() - s for w, s in zip(model.weights, start)}
        for path, multiplier in by_path.items():
            self.assertAllClose(steps[0.5][path], multiplier * steps[None][path], atol=1e-7, rtol=1e-4, msg=path)
        self.assertAllClose(steps[0.5]["head/kernel"], steps[None]["head/kernel"], atol=1e-7, rtol=1e-4)


class TextFineTuneTest(TestCase):
    def test_lp_ft_probe_leaves_the_backbone(self):
        x, y = token_task()
        for probe in ("convex", "fit"):
            with self.subTest(probe=probe):
                model = build_classifier(encoder(), 2, dropout=0.0)
                backbone = get_backbone(model)
                before = snapshot(model.weights)
                model, histories = fine_tune(
                    model, x, y, probe=probe, probe_epochs=2, epochs=0, batch_size=16, verbose=0
                )
                self.assertEqual(changed(before, backbone.weights), set())
                self.assertEqual(changed(before, get_head(model).weights), {"head/kernel", "head/bias"})
                dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
                model, histories = fine_tune(
                    model, dataset, probe=None, epochs=1, learning_rate=1e-2, blocks="last", verbose=0
                )
                self.assertEqual(histories["fine_tune"].params["epochs"], 1)
                moved = changed(before, backbone.weights)
                self.assertTrue(moved and all("block1_" in p or "final_ln" in p for p in moved), moved)

    def test_lora_on_attention_projections(self):
        x, y = token_task()
        model = build_classifier(encoder(), 2, dropout=0.0)
        model, _ = fine_tune(model, x, y, epochs=0, verbose=0)
        lora = add_adapters(model, keras.layers.EinsumDense, kind="lora", rank=2, train_normalization=False)
        factors = [w.path for w in lora.trainable_weights if "lora" in w.path]
        self.assertLen(factors, 2 * 4 * 2)  # a, b x (query, key, value, output) x 2 blocks
        self.assertEqual([w.path for w in lora.trainable_weights if "lora" not in w.path], ["head/kernel", "head/bias"])
        compile_for_fine_tuning(lora, learning_rate=1e-2)
        before = snapshot(lora.weights)
        lora.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        moved = changed(before, lora.weights)
        self.assertEqual({p for p in moved if "lora" not in p}, {"head/kernel", "head/bias"})
        self.assertTrue(all(p in moved for p in factors), set(factors) - moved)
        merged = merge_lora(lora)
        self.assertAllClose(merged.predict(x, verbose=0), lora.predict(x, verbose=0), atol=1e-5)

    def test_keras_round_trip_and_export_with_int64_ids(self):
        x, y = token_task()
        x = x.astype("int64")  # word_tokenizer's dtype: `serve` must take it
        model = build_classifier(encoder(), 2, pooling="max")
        compile_for_fine_tuning(model, learning_rate=1e-2)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        self.run_serialization_test(model, x)
        self.run_export_test(model, x)


def bert_backbone():
    return keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )


def bert_task(n=32, seed=0):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(6, 50, (n, 8)).astype("int32")
    lengths = rng.integers(4, 9, n)
    padding = (np.arange(8)[None, :] < lengths[:, None]).astype("int32")
    token_ids[: n // 2, 1] = 5
    token_ids *= padding
    y = (token_ids == 5).any(axis=1).astype("int64")
    x = {"token_ids": token_ids, "padding_mask": padding, "segment_ids": np.zeros_like(token_ids)}
    return x, y


@unittest.skipIf(keras_hub is None, "keras-hub is not installed (optional extra `hub`)")
class KerasHubTextTest(TestCase):
    def test_classifier_blocks_and_rates(self):
        backbone = bert_backbone()
        # Keras numbers default names per process ("bert_backbone_1" after another test built one).
        name = backbone.name
        model = build_classifier(backbone, 3, dropout=0.0)
        self.assertEqual(model.name, f"{name}_classifier")
        self.assertEqual(sorted(model.input), ["padding_mask", "segment_ids", "token_ids"])
        x, _ = bert_task()
        pooled = keras.ops.convert_to_numpy(get_backbone(model)(x)["pooled_output"])
        head = get_head(model)
        self.assertAllClose(model.predict(x, verbose=0), softmax(pooled @ head.kernel.numpy()), atol=1e-5)
        blocks = backbone_blocks(get_backbone(model))
        self.assertEqual(list(blocks), ["stem", "transformer_layer_0", "transformer_layer_1", "top"])
        pairs = dict(learning_rate_multipliers(model, 1.0, layer_decay=0.5))
        self.assertEqual(pairs["^pooled_dense/"], 1.0)
        self.assertEqual(pairs["^transformer_layer_1/"], 0.5)
        self.assertEqual(pairs["^transformer_layer_0/"], 0.25)
        self.assertEqual(pairs["^token_embedding/"], 0.125)
        avg = build_classifier(bert_backbone(), 2, pooling="avg")
        self.assertIn("pool", [layer.name for layer in avg.layers])

    def test_fine_tune_with_dict_inputs(self):
        x, y = bert_task()
        model = build_classifier(bert_backbone(), 2, dropout=0.0)
        backbone = get_backbone(model)
        before = snapshot(model.weights)
        model, histories = fine_tune(model, x, y, epochs=0, batch_size=16, verbose=0)
        self.assertEqual(changed(before, backbone.weights), set())
        self.assertEqual(changed(before, get_head(model).weights), {"head/kernel", "head/bias"})
        model, histories = fine_tune(model, x, y, probe=None, epochs=1, learning_rate=1e-2, blocks="last", verbose=0)
        moved = changed(before, backbone.weights)
        self.assertTrue(moved and all(p.startswith(("transformer_layer_1/", "pooled_dense/")) for p in moved), moved)

    def test_lora_round_trip_and_export(self):
        x, y = bert_task()
        model = build_classifier(bert_backbone(), 2, dropout=0.0)
        lora = add_adapters(model, r"query|value", kind="lora", rank=2, train_normalization=False)
        compile_for_fine_tuning(lora, learning_rate=1e-2)
        before = snapshot(lora.weights)
        lora.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        moved = changed(before, lora.weights)
        self.assertEqual({p for p in moved if "lora" not in p}, {"head/kernel", "head/bias"})
        self.assertLen([p for p in moved if "lora" in p], 2 * 2 * 2)
        merged = merge_lora(lora)
        self.assertAllClose(merged.predict(x, verbose=0), lora.predict(x, verbose=0), atol=1e-5)
        self.run_serialization_test(merged, x)
        self.run_export_test(merged, x)
