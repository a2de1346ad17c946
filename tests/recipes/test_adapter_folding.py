import keras
import numpy as np

from keras_transfer.layers import BottleneckAdapter
from keras_transfer.layers import ConvAdapter
from keras_transfer.layers import FrozenBatchNormalization
from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import fold_adapters
from keras_transfer.recipes import get_lora_factors
from keras_transfer.recipes import merge_lora
from keras_transfer.recipes import unmerge_lora
from keras_transfer.utils.model_graph import iter_leaf_layers
from tests.recipes.adapter_models import tiny_cnn
from tests.test_case import TestCase


def randomise(model, scale=0.3, seed=0):
    """Moves every trainable variable (adapters, LoRA, head) away from its identity init."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(size=variable.shape) * scale)


def architecture(model):
    return [
        (path, type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for path, layer in iter_leaf_layers(model)
    ]


class FoldTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = tiny_cnn()
        cls.x = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")

    def check_fold(self, adapted, atol=1e-5):
        folded = fold_adapters(adapted)
        self.assertEqual(architecture(folded), architecture(self.base))
        self.assertFalse(
            any(isinstance(layer, (ConvAdapter, BottleneckAdapter)) for _, layer in iter_leaf_layers(folded))
        )
        self.assertAllClose(folded.predict(self.x, verbose=0), adapted.predict(self.x, verbose=0), atol=atol, rtol=1e-4)
        return folded

    def test_series_after_conv_matches_seed_formula(self):
        adapted = add_adapters(self.base, "conv2", "conv_series", use_bias=True)
        randomise(adapted)
        folded = self.check_fold(adapted)
        adapter = adapted.get_layer("backbone").get_layer("conv2_adapter")
        conv = self.base.get_layer("backbone").get_layer("conv2")
        alpha, c = adapter.alpha.numpy(), adapter.bias.numpy()
        # y = rho(f * x) = (diag_1(alpha + I) * f) * x: W' = W (alpha + I), b' = b (alpha + I) + c.
        expected_w = np.einsum("hwcd,de->hwce", conv.kernel.numpy(), alpha + np.eye(8))
        new = folded.get_layer("backbone").get_layer("conv2")
        self.assertAllClose(new.kernel, expected_w, atol=1e-5)
        self.assertAllClose(new.bias, conv.bias.numpy() @ (alpha + np.eye(8)) + c, atol=1e-5)

    def test_series_through_batchnorm_and_depthwise(self):
        adapted = add_adapters(self.base, "bn1", "conv_series")
        randomise(adapted, seed=1)
        folded = self.check_fold(adapted)
        # The BatchNorm's scale / shift are unchanged, its moving mean absorbs the constant.
        bn, new_bn = (m.get_layer("backbone").get_layer("bn1") for m in (self.base, folded))
        self.assertAllClose(new_bn.gamma, bn.gamma, atol=0, rtol=0)
        self.assertAllClose(new_bn.moving_variance, bn.moving_variance, atol=0, rtol=0)
        per_channel = add_adapters(self.base, ["dw", "conv1"], "conv_series", per_channel=True)
        randomise(per_channel, seed=2)
        self.check_fold(per_channel)

    def test_parallel_on_strided_conv_and_depthwise(self):
        adapted = add_adapters(self.base, "conv2", "conv_parallel", use_bias=True)
        randomise(adapted, seed=3)
        folded = self.check_fold(adapted)
        adapter = adapted.get_layer("backbone").get_layer("conv2_adapter")
        conv = self.base.get_layer("backbone").get_layer("conv2")
        # y = (f + diag_1(alpha)) * x: alpha added at the centre tap of the 3x3 filter.
        expected = conv.kernel.numpy().copy()
        expected[1, 1] += adapter.alpha.numpy()
        self.assertAllClose(folded.get_layer("backbone").get_layer("conv2").kernel, expected, atol=1e-6)
        depthwise = add_adapters(self.base, "dw", "conv_parallel", per_channel=True)
        randomise(depthwise, seed=4)
        self.check_fold(depthwise)

    def test_lora_and_conv_adapters_together(self):
        lora = add_adapters(self.base, ["conv1", "head"], "lora", rank=2)
        both = add_adapters(lora, "conv2", "conv_series")
        randomise(both, seed=5)
        folded = self.check_fold(both)
        self.assertFalse(any(getattr(layer, "lora_enabled", False) for _, layer in iter_leaf_layers(folded)))
        self.run_serialization_test(folded, self.x)
        self.run_export_test(folded, self.x)

    def test_affine_batchnorm_folds_back_to_batchnorm(self):
        # add_adapters(train_batchnorm="affine") puts a FrozenBatchNormalization in place of bn1; folding
        # gives back a plain BatchNormalization with the trained gamma/beta (also through the BN fold path).
        for targets in (["conv1", "conv2"], ["bn1", "conv2"]):
            adapted = add_adapters(self.base, targets, "conv_series", train_batchnorm="affine")
            randomise(adapted, seed=9)
            bn = adapted.get_layer("backbone").get_layer("bn1")
            self.assertIs(type(bn), FrozenBatchNormalization)
            bn.gamma.assign(np.random.default_rng(10).uniform(0.5, 1.5, size=8))  # away from 0: foldable
            self.assertNotAllClose(adapted.predict(self.x, verbose=0), self.base.predict(self.x, verbose=0), atol=1e-3)
            folded = self.check_fold(adapted)  # same layer classes as the base, outputs equal
            new_bn = folded.get_layer("backbone").get_layer("bn1")
            self.assertIs(type(new_bn), keras.layers.BatchNormalization)
            self.assertFalse(new_bn.trainable)
            self.assertFalse(any(isinstance(layer, FrozenBatchNormalization) for _, layer in iter_leaf_layers(folded)))
            self.assertAllClose(new_bn.gamma, bn.gamma, atol=0, rtol=0)
            self.assertAllClose(new_bn.beta, bn.beta, atol=0, rtol=0)
            self.assertAllClose(new_bn.moving_variance, bn.moving_variance, atol=0, rtol=0)

    def test_refuses_non_foldable_placements(self):
        after_relu = add_adapters(self.base, "relu1", "conv_series")
        self.assertRaisesValueError(
            ["ConvAdapter 'relu1_adapter' cannot be folded exactly", "'relu1' (ReLU)"], fold_adapters, after_relu
        )
        bottleneck = add_adapters(self.base, "conv2", "bottleneck", bottleneck_dim=2)
        self.assertRaisesValueError(
            ["BottleneckAdapter 'conv2_adapter' cannot be folded", "relu"], fold_adapters, bottleneck
        )
        full_depthwise = add_adapters(self.base, "dw", "conv_series")
        self.assertRaisesValueError(
            ["'dw_adapter'", "depthwise convolution 'dw'", "per_channel=True"], fold_adapters, full_depthwise
        )
        no_bias = add_adapters(self.base, "conv1", "conv_parallel", use_bias=True)
        self.assertRaisesValueError(["'conv1_adapter'", "use_bias=False"], fold_adapters, no_bias)

    def test_refuses_activation_and_fan_out(self):
        inputs = keras.Input((6, 6, 2))
        h = keras.layers.Conv2D(4, 3, activation="relu", name="conv_relu")(inputs)
        g = keras.layers.Conv2D(4, 1, name="conv_linear")(h)
        out = keras.layers.Add()([ConvAdapter(name="a1")(g), g])
        model = keras.Model(inputs, [ConvAdapter(name="a0")(h), out])
        model_a0 = keras.Model(inputs, ConvAdapter(name="a0")(h))
        self.assertRaisesValueError(["'a0'", "non-linear activation 'relu'"], fold_adapters, model_a0)
        model_a1 = keras.Model(inputs, out)
        self.assertRaisesValueError(["'a1'", "also feeds other layers"], fold_adapters, model_a1)
        del model


class FoldKerasApplicationsTest(TestCase):
    def test_mobilenet_v3_classifier_fold(self):
        # A keras.applications backbone nested in a build_classifier model: series adapters after every
        # 1x1 expand / project conv, parallel beside the first conv; folded back to the original graph.
        keras.utils.set_random_seed(0)
        model = build_classifier("mobilenet_v3_small", 4, (32, 32, 1), minimalistic=True, alpha=0.75)
        x = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 1)).astype("float32")
        backbone = model.get_layer("backbone")
        rng = np.random.default_rng(1)
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape) * 0.1)
                layer.moving_variance.assign(rng.uniform(0.5, 1.5, size=layer.moving_variance.shape))
        series = add_adapters(model, r".*(expand|project)", "conv_series")
        both = add_adapters(series, "conv", "conv_parallel")
        randomise(both, scale=0.05)
        folded = fold_adapters(both)
        self.assertEqual(architecture(folded), architecture(model))
        expected = both.predict(x, verbose=0)
        self.assertAllClose(folded.predict(x, verbose=0), expected, atol=2e-5, rtol=1e-3)
        self.assertNotAllClose(model.predict(x, verbose=0), expected, atol=1e-3)
        # The same with BatchNorm affine training: FrozenBatchNormalization layers fold back to BatchNorm.
        affine = add_adapters(model, r".*(expand|project)", "conv_series", train_batchnorm="affine")
        randomise(affine, scale=0.05)
        for _, layer in iter_leaf_layers(affine):
            if isinstance(layer, FrozenBatchNormalization):
                layer.gamma.assign(rng.uniform(0.8, 1.2, size=layer.gamma.shape))
        folded = fold_adapters(affine)
        self.assertEqual(architecture(folded), architecture(model))
        self.assertAllClose(folded.predict(x, verbose=0), affine.predict(x, verbose=0), atol=2e-5, rtol=1e-3)


class LoraMergeTest(TestCase):
    def test_merge_matches_formula_and_unmerge_restores(self):
        base = tiny_cnn()
        x = np.random.default_rng(0).uniform(size=(3, 8, 8, 3)).astype("float32")
        lora = add_adapters(base, ["conv2", "head"], "lora", rank=2, lora_alpha=3.0)
        randomise(lora, seed=7)
        factors = get_lora_factors(lora)
        self.assertEqual(sorted(factors), ["backbone/conv2", "head"])
        merged = merge_lora(lora)
        self.assertFalse(any(getattr(layer, "lora_enabled", False) for _, layer in iter_leaf_layers(merged)))
        head_base = base.get_layer("head").kernel.numpy()
        a, b = factors["head"]["a"], factors["head"]["b"]
        # LoRA: W + (alpha / r) A B.
        self.assertAllClose(merged.get_layer("head").kernel, head_base + 1.5 * a @ b, atol=1e-5)
        conv_base = base.get_layer("backbone").get_layer("conv2").kernel.numpy()
        fa, fb = factors["backbone/conv2"]["a"], factors["backbone/conv2"]["b"]
        self.assertAllClose(
            merged.get_layer("backbone").get_layer("conv2").kernel,
            conv_base + 1.5 * np.einsum("hwcr,rd->hwcd", fa, fb),
            atol=1e-5,
        )
        self.assertAllClose(merged.predict(x, verbose=0), lora.predict(x, verbose=0), atol=1e-5)

        restored = unmerge_lora(merged, factors)
        self.assertAllClose(restored.get_layer("head")._kernel, head_base, atol=1e-5)
        self.assertAllClose(restored.get_layer("head").lora_kernel_b, b, atol=0, rtol=0)
        self.assertAllClose(restored.predict(x, verbose=0), lora.predict(x, verbose=0), atol=1e-5)
        self.assertEqual(restored.get_layer("head").lora_rank, 2)

    def test_errors(self):
        base = tiny_cnn()
        self.assertRaisesValueError("must have LoRA-enabled layers to merge", merge_lora, base)
        self.assertRaisesValueError("must have LoRA-enabled layers", get_lora_factors, base)
        self.assertRaisesValueError(
            ["names layers that `model` does not have", "'nope'"], unmerge_lora, base, {"nope": {}}
        )
        self.assertRaisesValueError("non-empty dict", unmerge_lora, base, {})
        lora = add_adapters(base, "head", "lora", rank=2)
        factors = get_lora_factors(lora)
        factors["head"]["a"] = np.zeros((3, 2))
        self.assertRaisesValueError(
            ["LoRA factors for layer 'head' must have shapes", "(3, 2)"], unmerge_lora, merge_lora(lora), factors
        )


class LoraAttentionMergeTest(TestCase):
    def test_merge_and_unmerge_projections_inside_multi_head_attention(self):
        from tests.recipes.adapter_models import transformer_stack

        encoder = transformer_stack(blocks=1)
        x = np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")
        lora = add_adapters(encoder, ["query", "value", "ffn_in_0"], "lora", rank=2)
        randomise(lora, seed=8)
        factors = get_lora_factors(lora)
        self.assertEqual(sorted(factors), ["ffn_in_0", "mha_0/query", "mha_0/value"])
        merged = merge_lora(lora)
        self.assertAllClose(merged.predict(x, verbose=0), lora.predict(x, verbose=0), atol=1e-5)
        query = merged.get_layer("mha_0")._query_dense
        self.assertFalse(query.lora_enabled)
        base_query = encoder.get_layer("mha_0")._query_dense.kernel.numpy()
        a, b = factors["mha_0/query"]["a"], factors["mha_0/query"]["b"]
        # EinsumDense LoRA: kernel (16, heads, key_dim) + (alpha / r) A B, A (16, heads, r), B (r, key_dim).
        self.assertAllClose(query.kernel, base_query + np.einsum("ihr,rk->ihk", a, b), atol=1e-5)
        restored = unmerge_lora(merged, factors)
        self.assertAllClose(restored.predict(x, verbose=0), lora.predict(x, verbose=0), atol=1e-5)
        self.assertAllClose(restored.get_layer("mha_0")._query_dense._kernel, base_query, atol=1e-5)
        self.assertEqual(
            sorted(v.path.split("/")[-2] + "/" + v.name for v in restored.trainable_weights if "lora" in v.name),
            sorted(f"{n}/lora_kernel_{ab}" for n in ("query", "value", "ffn_in_0") for ab in "ab"),
        )
