"""add_adapters(kind="dora"), merge_dora / get_dora_factors / unmerge_dora, task weights and report."""

import os

import keras
import numpy as np

from keras_transfer.layers import DoRAConv2D
from keras_transfer.layers import DoRADense
from keras_transfer.layers import DoRAEinsumDense
from keras_transfer.recipes import adapter_parameter_report
from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import fold_adapters
from keras_transfer.recipes import get_adapter_weights
from keras_transfer.recipes import get_dora_factors
from keras_transfer.recipes import load_adapter_weights
from keras_transfer.recipes import merge_dora
from keras_transfer.recipes import save_adapter_weights
from keras_transfer.recipes import set_adapter_weights
from keras_transfer.recipes import unmerge_dora
from keras_transfer.recipes.adapters import iter_all_layers
from tests.layers.dora_reference import numpy_dora_kernel
from tests.layers.dora_reference import randomize_dora
from tests.recipes.adapter_models import compiled
from tests.recipes.adapter_models import tiny_cnn
from tests.recipes.adapter_models import transformer_stack
from tests.test_case import TestCase


def _dora_sublayers(model):
    return [layer for _, layer in iter_all_layers(model) if getattr(layer, "dora_enabled", False)]


def _max_relative(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


class DoRAInsertionTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.encoder = transformer_stack()
        cls.tokens = np.random.default_rng(0).normal(size=(6, 6, 16)).astype("float32")
        cls.cnn = tiny_cnn()
        cls.images = np.random.default_rng(1).uniform(size=(6, 8, 8, 3)).astype("float32")
        cls.labels = np.array([0, 1, 2, 0, 1, 2])

    def test_dense_and_attention_projections(self):
        adapted = add_adapters(self.encoder, [r"ffn_.*", keras.layers.EinsumDense], "dora", rank=2, lora_alpha=4)
        self.assertIs(type(adapted.get_layer("ffn_in_0")), DoRADense)
        query = adapted.get_layer("mha_0")._query_dense
        self.assertIs(type(query), DoRAEinsumDense)
        self.assertEqual(tuple(query.dora_magnitude.shape), (2, 8))  # (heads, head_dim)
        self.assertEqual(tuple(adapted.get_layer("mha_0")._output_dense.dora_magnitude.shape), (16,))
        self.assertIs(type(self.encoder.get_layer("ffn_in_0")), keras.layers.Dense)  # original untouched
        self.assertAllClose(adapted(self.tokens), self.encoder(self.tokens), atol=0, rtol=0)  # exactly the base
        self.assertAllClose(adapted.predict(self.tokens, verbose=0), self.encoder.predict(self.tokens, verbose=0))
        trainable = sorted(v.path for v in adapted.trainable_weights)
        self.assertIn("mha_1/value/dora_magnitude", trainable)
        self.assertIn("ffn_out_1/dora_kernel_a", trainable)
        self.assertNotIn("ffn_out_1/kernel", trainable)
        self.assertNotIn("ffn_out_1/bias", trainable)
        report = adapter_parameter_report(adapted)
        dora_sizes = [int(np.prod(v.shape)) for v in adapted.trainable_weights if "dora" in v.name]
        self.assertEqual(len(dora_sizes), 2 * (4 + 2) * 3)  # 2 blocks x (4 projections + 2 dense) x (A, B, m)
        self.assertEqual(report["by_role"]["dora"], sum(dora_sizes))
        self.assertEqual(report["by_role"]["lora"], 0)
        self.assertIn("mha_0/query", {row["name"] for row in report["adapters"] if row["role"] == "dora"})
        self.assertEqual(report["trainable_params"], sum(dora_sizes) + 4 * 2 * 16 + 16 * 3 + 3)

    def test_fit_moves_only_factors_then_round_trips(self):
        adapted = compiled(add_adapters(self.cnn, keras.layers.Conv2D, "dora", rank=2), lr=0.05)
        backbone = adapted.get_layer("backbone")
        self.assertIs(type(backbone.get_layer("conv1")), DoRAConv2D)
        self.assertAllClose(adapted.predict(self.images, verbose=0), self.cnn.predict(self.images, verbose=0))
        frozen = [backbone.get_layer("conv1")._kernel, backbone.get_layer("conv2")._kernel, backbone.get_layer("dw")]
        frozen.append(backbone.get_layer("conv2").bias)
        self.run_fit_test(adapted, self.images, self.labels, batch_size=6, steps=3, frozen=frozen)
        for name in ("conv1", "conv2"):  # the frozen base kernel is bit-identical to the original
            original = self.cnn.get_layer("backbone").get_layer(name).kernel
            self.assertAllClose(backbone.get_layer(name)._kernel, original, atol=0, rtol=0, msg=name)
        self.assertNotAllClose(adapted.predict(self.images, verbose=0), self.cnn.predict(self.images, verbose=0))
        reloaded = self.run_serialization_test(adapted, self.images)
        self.assertIs(type(reloaded.get_layer("backbone").get_layer("conv2")), DoRAConv2D)
        self.run_export_test(adapted, self.images)

    def test_attention_reload_is_merged(self):
        adapted = compiled(add_adapters(self.encoder, keras.layers.EinsumDense, "dora", rank=2))
        adapted.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        adapted.fit(self.tokens, np.ones((6, 3)), epochs=2, verbose=0)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        adapted.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertIs(type(reloaded.get_layer("mha_0")._query_dense), keras.layers.EinsumDense)
        self.assertAllClose(reloaded.predict(self.tokens, verbose=0), adapted.predict(self.tokens, verbose=0))
        self.run_export_test(adapted, self.tokens)

    def test_mixed_precision_step(self):
        def build():
            return compiled(add_adapters(tiny_cnn(), keras.layers.Conv2D, "dora", rank=2))

        model, _ = self.run_mixed_precision_test(build, self.images, self.labels, batch_size=6)
        conv = model.get_layer("backbone").get_layer("conv1")
        self.assertEqual(conv.dora_magnitude.dtype, "float32")
        self.assertEqual(conv.compute_dtype, "float16")

    def test_forward_equals_numpy_formula_in_a_model(self):
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh", name="body")])
        adapted = add_adapters(model, "body", "dora", rank=3, lora_alpha=1.5, trainable_layers=None)
        layer = adapted.get_layer("body")
        randomize_dora(layer)
        w0 = model.get_layer("body").kernel.numpy()
        a, b, m = (v.numpy() for v in (layer.dora_kernel_a, layer.dora_kernel_b, layer.dora_magnitude))
        x = np.random.default_rng(2).normal(size=(3, 5))
        expected = np.tanh(x @ numpy_dora_kernel(w0, a, b, m, 1.5, 3, (0,), (1,)) + model.get_layer("body").bias)
        self.assertAllClose(adapted.predict(x, verbose=0), expected, atol=1e-5, rtol=1e-5)

    def test_task_weights_save_and_switch(self):
        model = compiled(add_adapters(self.cnn, keras.layers.Conv2D, "dora", rank=2))
        initial = get_adapter_weights(model)
        self.assertIn("backbone/conv1/dora_magnitude", initial)
        self.assertNotIn("backbone/conv1/kernel", initial)
        model.fit(self.images, self.labels, epochs=2, verbose=0)
        out_a = model.predict(self.images, verbose=0)
        path = save_adapter_weights(model, os.path.join(self.get_temp_dir(), "task_a.npz"))
        set_adapter_weights(model, initial)
        self.assertAllClose(model.predict(self.images, verbose=0), self.cnn.predict(self.images, verbose=0))
        load_adapter_weights(model, path)
        self.assertAllClose(model.predict(self.images, verbose=0), out_a)


class DoRAKerasHubTest(TestCase):
    def test_transformer_encoder_projections(self):
        try:
            import keras_hub
        except ImportError:
            self.skipTest("keras-hub is not installed (optional; Keras MultiHeadAttention is tested above)")
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 16))
        x = inputs
        for i in range(2):
            x = keras_hub.layers.TransformerEncoder(32, 2, name=f"encoder_{i}")(x)
        outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(x))
        model = keras.Model(inputs, outputs)
        tokens = np.random.default_rng(0).normal(size=(4, 6, 16)).astype("float32")
        adapted = add_adapters(model, r"query|value|.*feedforward_intermediate_dense", "dora", rank=2)
        self.assertAllClose(adapted(tokens), model(tokens), atol=0, rtol=0)
        rows = sorted(row["name"] for row in adapter_parameter_report(adapted)["adapters"])
        expected = [f"encoder_{i}/self_attention_layer/{p}" for i in range(2) for p in ("query", "value")]
        expected += [f"encoder_{i}/feedforward_intermediate_dense" for i in range(2)]
        self.assertEqual(rows, sorted(expected))
        for layer in _dora_sublayers(adapted):
            randomize_dora(layer, seed=len(layer.name))
        expected_out = adapted.predict(tokens, verbose=0)
        factors = get_dora_factors(adapted)
        merged = merge_dora(adapted)
        self.assertAllClose(merged.predict(tokens, verbose=0), expected_out, atol=1e-5, rtol=1e-5)
        self.assertAllClose(unmerge_dora(merged, factors).predict(tokens, verbose=0), expected_out, atol=1e-5)
        reloaded = self.run_serialization_test(merged, tokens, atol=1e-5)
        self.assertAllClose(reloaded.predict(tokens, verbose=0), expected_out, atol=1e-5, rtol=1e-5)


class DoRAMergeTest(TestCase):
    def _trained(self, base, targets, x, y):
        adapted = add_adapters(base, targets, "dora", rank=2)
        for layer in _dora_sublayers(adapted):
            randomize_dora(layer, seed=len(layer.name))
        return adapted

    def test_merge_unmerge_round_trip(self):
        cases = [
            (
                transformer_stack(),
                [r"ffn_.*", keras.layers.EinsumDense],
                np.random.default_rng(0).normal(size=(4, 6, 16)),
            ),
            (tiny_cnn(), keras.layers.Conv2D, np.random.default_rng(1).uniform(size=(4, 8, 8, 3))),
        ]
        for base, targets, x in cases:
            adapted = self._trained(base, targets, x, None)
            expected = adapted.predict(x, verbose=0)
            factors = get_dora_factors(adapted)
            merged = merge_dora(adapted)
            kinds = {type(layer).__name__ for _, layer in iter_all_layers(merged)}
            self.assertFalse({"DoRADense", "DoRAEinsumDense", "DoRAConv2D"} & kinds, kinds)
            self.assertAllClose(merged.predict(x, verbose=0), expected, atol=1e-5, rtol=1e-5)
            back = unmerge_dora(merged, factors)
            self.assertAllClose(back.predict(x, verbose=0), expected, atol=1e-5, rtol=1e-5)
            originals = dict(iter_all_layers(base))
            for path, layer in iter_all_layers(back):
                if getattr(layer, "dora_enabled", False):
                    restored = layer._kernel.numpy()
                    self.assertLessEqual(_max_relative(restored, originals[path].kernel.numpy()), 1e-5, path)
                    self.assertAllClose(layer.dora_kernel_b, factors[path]["b"], atol=0, rtol=0)
            self.assertEqual(sorted(factors), sorted(get_dora_factors(back)))

    def test_fold_adapters_merges_dora_too(self):
        base = tiny_cnn()
        x = np.random.default_rng(3).uniform(size=(4, 8, 8, 3)).astype("float32")
        adapted = add_adapters(self._trained(base, "conv1", None, None), "conv2", "conv_series")
        adapted.get_layer("backbone").get_layer("conv2_adapter").alpha.assign(np.eye(8) * 0.3)
        folded = fold_adapters(adapted)
        kinds = {type(layer).__name__ for _, layer in iter_all_layers(folded)}
        self.assertFalse({"DoRAConv2D", "ConvAdapter"} & kinds, kinds)
        self.assertAllClose(folded.predict(x, verbose=0), adapted.predict(x, verbose=0), atol=1e-5, rtol=1e-5)
        self.assertNotAllClose(folded.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-3)

    def test_merged_kernel_is_the_formula(self):
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="body")])
        adapted = self._trained(model, "body", None, None)
        layer = adapted.get_layer("body")
        values = [v.numpy() for v in (layer.dora_kernel_a, layer.dora_kernel_b, layer.dora_magnitude)]
        expected = numpy_dora_kernel(model.get_layer("body").kernel.numpy(), *values, 2.0, 2, (0,), (1,))
        merged = merge_dora(adapted).get_layer("body")
        self.assertIs(type(merged), keras.layers.Dense)
        self.assertAllClose(merged.kernel, expected, atol=1e-6, rtol=1e-5)

    def test_errors(self):
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="body")])
        self.assertRaisesValueError("must have DoRA layers", merge_dora, model)
        self.assertRaisesValueError("must have DoRA layers", get_dora_factors, model)
        self.assertRaisesValueError("non-empty dict", unmerge_dora, model, {})
        self.assertRaisesValueError(["'nope'", "body"], unmerge_dora, model, {"nope": {}})


class DoRAErrorTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cnn = tiny_cnn()

    def test_rank(self):
        for rank in (0, -2, 1.5):
            self.assertRaisesValueError(
                ["`rank` must be a positive integer", f"Received: rank={rank!r}", "rank=4"],
                add_adapters,
                self.cnn,
                "conv2",
                "dora",
                rank=rank,
            )
        # conv2: 3 x 3 x 8 inputs, 8 filters -> at most rank 8.
        self.assertRaisesValueError(
            ["`rank` must be an int between 1 and", "min(72, 8) = 8", "layer 'backbone/conv2'", "Received: rank=9"],
            add_adapters,
            self.cnn,
            "conv2",
            "dora",
            rank=9,
        )

    def test_unsupported_layer(self):
        for target, name in (("dw", "DepthwiseConv2D"), ("bn1", "BatchNormalization")):
            self.assertRaisesValueError(
                ["Dense, EinsumDense or Conv2D", "kind='dora'", f"'backbone/{target}'", name],
                add_adapters,
                self.cnn,
                target,
                "dora",
            )
