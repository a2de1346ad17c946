import keras
import numpy as np

from keras_transfer.layers import BottleneckAdapter
from keras_transfer.layers import ConvAdapter
from keras_transfer.layers import FrozenBatchNormalization
from keras_transfer.recipes import adapter_parameter_report
from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import get_adapter_weights
from keras_transfer.utils import model_graph
from tests.recipes.adapter_models import compiled
from tests.recipes.adapter_models import tiny_cnn
from tests.recipes.adapter_models import transformer_stack
from tests.test_case import TestCase


def trainable_layer_names(model):
    names = set()
    for variable in model.trainable_weights:
        names.add(variable.path.split("/")[-2])
    return names


class InsertionTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cnn = tiny_cnn()
        cls.encoder = transformer_stack()
        rng = np.random.default_rng(0)
        cls.x = rng.uniform(size=(6, 8, 8, 3)).astype("float32")
        cls.y = np.array([0, 1, 2, 0, 1, 2])
        cls.tokens = rng.normal(size=(6, 6, 16)).astype("float32")
        cls.cnn_out = cls.cnn.predict(cls.x, verbose=0)

    def test_identity_at_insertion_and_original_untouched(self):
        base_weights = [w.copy() for w in self.cnn.get_weights()]
        base_ids = {id(v) for v in self.cnn.weights}
        for kind, extra in [
            ("bottleneck", {"bottleneck_dim": 4}),
            ("conv_series", {}),
            ("conv_parallel", {}),
            ("lora", {"rank": 2}),
        ]:
            adapted = add_adapters(self.cnn, keras.layers.Conv2D, kind, **extra)
            self.assertAllClose(adapted.predict(self.x, verbose=0), self.cnn_out, atol=1e-6, msg=kind)
            self.assertFalse(base_ids & {id(v) for v in adapted.weights}, f"{kind} shares variables")
            compiled(adapted).fit(self.x, self.y, epochs=2, verbose=0)
            self.assertNotAllClose(adapted.predict(self.x, verbose=0), self.cnn_out, atol=1e-5)
        for before, after in zip(base_weights, self.cnn.get_weights()):
            self.assertAllClose(after, before, atol=0, rtol=0)
        self.assertTrue(all(layer.trainable for _, layer in model_graph.iter_leaf_layers(self.cnn)))

    def test_placement_in_nested_backbone(self):
        adapted = add_adapters(self.cnn, [r"conv\d", "dw"], "conv_series", per_channel=True)
        backbone = adapted.get_layer("backbone")
        names = [layer.name for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]
        self.assertEqual(
            names, ["conv1", "conv1_adapter", "bn1", "relu1", "dw", "dw_adapter", "conv2", "conv2_adapter"]
        )
        for host in ("conv1", "dw", "conv2"):
            adapter = backbone.get_layer(f"{host}_adapter")
            producer = adapter.input._keras_history.operation
            self.assertEqual(producer.name, host)
        self.assertIs(backbone.get_layer("bn1").input._keras_history.operation, backbone.get_layer("conv1_adapter"))

    def test_parallel_adapter_reads_conv_input(self):
        adapted = add_adapters(self.cnn, "conv2", "conv_parallel")
        backbone = adapted.get_layer("backbone")
        adapter = backbone.get_layer("conv2_adapter")
        x_in, fx = adapter._inbound_nodes[0].input_tensors
        self.assertIs(x_in, backbone.get_layer("conv2").input)
        self.assertIs(fx._keras_history.operation, backbone.get_layer("conv2"))
        self.assertEqual(adapter.host_strides, (2, 2))
        self.assertEqual(adapter.host_kernel_size, (3, 3))

    def test_only_adapters_norms_and_head_train(self):
        adapted = add_adapters(self.cnn, keras.layers.Conv2D, "bottleneck", bottleneck_dim=4)
        self.assertEqual(trainable_layer_names(adapted), {"conv1_adapter", "conv2_adapter", "head"})
        with_bn = add_adapters(self.cnn, keras.layers.Conv2D, "conv_series", train_batchnorm=True)
        self.assertEqual(trainable_layer_names(with_bn), {"conv1_adapter", "conv2_adapter", "head", "bn1"})
        no_head = add_adapters(self.cnn, keras.layers.Conv2D, "conv_series", trainable_layers=None)
        self.assertEqual(trainable_layer_names(no_head), {"conv1_adapter", "conv2_adapter"})
        lora = add_adapters(self.cnn, ["conv1", "conv2"], "lora", rank=2)
        self.assertEqual(
            sorted(v.path for v in lora.trainable_weights),
            sorted(
                [
                    "conv1/lora_kernel_a",
                    "conv1/lora_kernel_b",
                    "conv2/lora_kernel_a",
                    "conv2/lora_kernel_b",
                    "head/kernel",
                    "head/bias",
                ]
            ),
        )

    def test_harness_steps_on_adapted_model(self):
        adapted = compiled(add_adapters(self.cnn, keras.layers.Conv2D, "conv_parallel"))
        backbone = adapted.get_layer("backbone")
        frozen = [backbone.get_layer(name) for name in ("conv1", "bn1", "dw", "conv2")]
        self.run_fit_test(adapted, self.x, self.y, batch_size=6, frozen=frozen)
        reloaded = self.run_serialization_test(adapted, self.x)
        self.assertIsInstance(reloaded.get_layer("backbone").get_layer("conv1_adapter"), ConvAdapter)
        self.assertFalse(reloaded.get_layer("backbone").get_layer("conv1").trainable)
        self.run_export_test(adapted, self.x)

    def test_mixed_precision_step(self):
        def build():
            base = tiny_cnn()
            return compiled(add_adapters(base, keras.layers.Conv2D, "bottleneck", bottleneck_dim=4))

        model, _ = self.run_mixed_precision_test(build, self.x, self.y, batch_size=6)
        adapter = model.get_layer("backbone").get_layer("conv1_adapter")
        self.assertEqual(adapter.compute_dtype, "float16")

    def test_transformer_stack_houlsby_placement(self):
        adapted = add_adapters(
            self.encoder,
            [keras.layers.MultiHeadAttention, r"ffn_out_\d"],
            "bottleneck",
            bottleneck_dim=4,
            use_layer_norm=False,
        )
        self.assertAllClose(
            adapted.predict(self.tokens, verbose=0), self.encoder.predict(self.tokens, verbose=0), atol=1e-6
        )
        for i in range(2):
            for host, residual in ((f"mha_{i}", f"res_attn_{i}"), (f"ffn_out_{i}", f"res_ffn_{i}")):
                adapter = adapted.get_layer(f"{host}_adapter")
                self.assertIs(adapter.input._keras_history.operation, adapted.get_layer(host))
                consumers = [node.operation.name for node in adapter._outbound_nodes]
                self.assertEqual(consumers, [residual])
        self.assertEqual(
            trainable_layer_names(adapted),
            {f"{h}_adapter" for i in range(2) for h in (f"mha_{i}", f"ffn_out_{i}")}
            | {f"ln_{k}_{i}" for i in range(2) for k in ("attn", "ffn")}
            | {"head"},
        )
        report = adapter_parameter_report(adapted)
        per_adapter = 2 * 16 * 4 + 16 + 4  # Houlsby: 2DM + D + M
        self.assertEqual([row["params"] for row in report["adapters"]], [per_adapter] * 4)
        self.assertEqual(report["by_role"]["normalization"], 4 * 2 * 16)
        self.assertEqual(report["by_role"]["head"], 16 * 3 + 3)
        compiled(adapted).fit(self.tokens, self.y, epochs=1, verbose=0)

    def test_keras_hub_transformer_encoder(self):
        try:
            import keras_hub
        except ImportError:
            self.skipTest("keras-hub is not installed (optional; the core-layer stack is tested above)")
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 16))
        x = inputs
        for i in range(2):
            x = keras_hub.layers.TransformerEncoder(32, 2, name=f"encoder_{i}")(x)
        outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(x))
        model = keras.Model(inputs, outputs)
        adapted = add_adapters(model, keras_hub.layers.TransformerEncoder, "bottleneck", bottleneck_dim=4)
        self.assertAllClose(adapted.predict(self.tokens, verbose=0), model.predict(self.tokens, verbose=0), atol=1e-6)
        self.assertEqual(trainable_layer_names(adapted), {"encoder_0_adapter", "encoder_1_adapter", "head"})
        # LoRA reaches the projections inside the subclassed encoder blocks by name.
        lora = add_adapters(model, r"query|value", "lora", rank=2)
        rows = [row["name"] for row in adapter_parameter_report(lora)["adapters"]]
        self.assertEqual(
            sorted(rows), sorted(f"encoder_{i}/self_attention_layer/{p}" for i in range(2) for p in ("query", "value"))
        )
        from keras_transfer.recipes import merge_lora

        for variable in lora.trainable_weights:
            variable.assign(np.random.default_rng(0).normal(size=variable.shape) * 0.1)
        self.assertAllClose(
            merge_lora(lora).predict(self.tokens, verbose=0), lora.predict(self.tokens, verbose=0), atol=1e-5
        )

    def test_sequential_model_and_user_model(self):
        keras.utils.set_random_seed(0)
        seq = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(8, name="d1"), keras.layers.Dense(3, name="head")]
        )
        x = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
        adapted = add_adapters(seq, "d1", "conv_parallel")
        self.assertAllClose(adapted.predict(x, verbose=0), seq.predict(x, verbose=0), atol=1e-6)
        self.assertIsInstance(adapted.get_layer("d1_adapter"), ConvAdapter)

    def test_lora_by_name_on_dense_and_attention(self):
        adapted = add_adapters(self.encoder, [r"ffn_.*", keras.layers.EinsumDense], "lora", rank=2, lora_alpha=4)
        report = adapter_parameter_report(adapted)
        names = {row["name"].rsplit("/", 1)[-1] for row in report["adapters"]}
        self.assertIn("ffn_in_0", names)
        self.assertIn("query", names)
        self.assertIn("mha_0/query", {row["name"] for row in report["adapters"]})
        keys = get_adapter_weights(adapted)
        self.assertIn("mha_1/value/lora_kernel_b", keys)
        self.assertNotIn("mha_1/value/kernel", keys)
        lora_sizes = [int(np.prod(v.shape)) for v in adapted.trainable_weights if "lora" in v.name]
        self.assertEqual(len(lora_sizes), 2 * (4 * 2 + 2 * 2))  # 2 blocks x (4 projections + 2 dense) x (A, B)
        self.assertEqual(report["by_role"]["lora"], sum(lora_sizes))
        self.assertEqual(report["trainable_params"], sum(lora_sizes) + 4 * 2 * 16 + 16 * 3 + 3)
        self.assertAllClose(
            adapted.predict(self.tokens, verbose=0), self.encoder.predict(self.tokens, verbose=0), atol=1e-6
        )


class InsertionErrorTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cnn = tiny_cnn()

    def test_no_layer_matches_lists_names(self):
        self.assertRaisesValueError(
            ["`targets` matches no layer", "'block_conv'", "available layers:", "backbone/conv1", "head"],
            add_adapters,
            self.cnn,
            "block_conv",
        )
        self.assertRaisesValueError("matches no layer", add_adapters, self.cnn, keras.layers.LSTM)

    def test_bad_arguments(self):
        self.assertRaisesValueError(
            ["`kind` must be one of", "kind='prefix'"], add_adapters, self.cnn, "conv1", "prefix"
        )
        try:
            import keras_hub  # noqa: F401
        except ImportError:
            return  # kind="houlsby" needs keras-hub (tests/recipes/test_houlsby_adapters.py)
        self.assertRaisesValueError(
            ["keras_hub.layers.TransformerEncoder blocks for kind='houlsby'", "conv1"],
            add_adapters,
            self.cnn,
            "conv1",
            "houlsby",
        )
        self.assertRaisesValueError(
            "`bottleneck_dim` must be a positive integer", add_adapters, self.cnn, "conv1", bottleneck_dim=0
        )
        self.assertRaisesValueError(
            ["`bottleneck_dim` must be at most", "'backbone/conv1' with 8 features"],
            add_adapters,
            self.cnn,
            "conv1",
            bottleneck_dim=9,
        )
        self.assertRaisesValueError(
            "`rank` must be a positive integer", add_adapters, self.cnn, "conv1", "lora", rank=0
        )
        self.assertRaisesValueError("invalid regular expression", add_adapters, self.cnn, "conv(")
        self.assertRaisesValueError("at least one", add_adapters, self.cnn, [])
        self.assertRaisesValueError("layer-name regexes, keras Layer classes", add_adapters, self.cnn, 3)

    def test_kind_specific_errors(self):
        self.assertRaisesValueError(["support LoRA", "'backbone/bn1'"], add_adapters, self.cnn, "bn1", "lora")
        self.assertRaisesValueError(
            ["conv_parallel", "'backbone/relu1'"], add_adapters, self.cnn, "relu1", "conv_parallel"
        )
        self.assertRaisesValueError(
            ["per_channel=True", "maps 3 to 8"], add_adapters, self.cnn, "conv1", "conv_parallel", per_channel=True
        )
        inputs = keras.Input((4,))
        scalar = keras.layers.Reshape((), name="squeeze")(keras.layers.Dense(1)(inputs))
        model = keras.Model(inputs, scalar)
        self.assertRaisesValueError(
            ["rank >= 2", "'squeeze' with output shape (None,)"], add_adapters, model, "squeeze", bottleneck_dim=1
        )

    def test_model_errors(self):
        class Subclassed(keras.Model):
            def call(self, x):
                return x

        self.assertRaisesValueError(["Functional or Sequential", "Subclassed"], add_adapters, Subclassed(), "x")
        self.assertRaisesValueError("must be a keras.Model", add_adapters, keras.layers.Dense(2), "x")
        self.assertRaisesValueError("must be built", add_adapters, keras.Sequential([keras.layers.Dense(2)]), "x")

    def test_shared_target_gets_one_adapter_per_call(self):
        inputs = keras.Input((4,))
        shared = keras.layers.Dense(4, name="shared")
        outputs = keras.layers.Add()([shared(inputs), shared(shared(inputs))])
        model = keras.Model(inputs, outputs)
        adapted = add_adapters(model, "shared", "bottleneck", bottleneck_dim=2)
        names = sorted(layer.name for layer in adapted.layers if isinstance(layer, BottleneckAdapter))
        self.assertEqual(names, ["shared_adapter", "shared_adapter_2", "shared_adapter_3"])


class RepeatedInsertionTest(TestCase):
    def test_second_call_keeps_earlier_adapters_training(self):
        base = tiny_cnn()
        first = add_adapters(base, "conv2", "conv_series")
        lora = add_adapters(first, "conv1", "lora", rank=2)
        second = add_adapters(lora, "dw", "conv_parallel", per_channel=True)
        self.assertEqual(
            sorted(v.path for v in second.trainable_weights),
            sorted(
                [
                    "conv2_adapter/alpha",
                    "dw_adapter/alpha",
                    "conv1/lora_kernel_a",
                    "conv1/lora_kernel_b",
                    "head/kernel",
                    "head/bias",
                ]
            ),
        )


class BatchNormAffineTest(TestCase):
    """add_adapters(train_batchnorm="affine"): gamma/beta train, BatchNorm statistics stay frozen."""

    @classmethod
    def setUpClass(cls):
        cls.cnn = tiny_cnn()
        rng = np.random.default_rng(0)
        cls.x = rng.uniform(size=(6, 8, 8, 3)).astype("float32")
        cls.y = np.array([0, 1, 2, 0, 1, 2])

    def test_trainable_set_statistics_and_report(self):
        adapted = compiled(add_adapters(self.cnn, keras.layers.Conv2D, "conv_series", train_batchnorm="affine"))
        backbone = adapted.get_layer("backbone")
        bn = backbone.get_layer("bn1")
        self.assertIs(type(bn), FrozenBatchNormalization)
        self.assertIs(type(self.cnn.get_layer("backbone").get_layer("bn1")), keras.layers.BatchNormalization)
        self.assertEqual(
            sorted(v.path for v in adapted.trainable_weights),
            sorted(["conv1_adapter/alpha", "conv2_adapter/alpha", "bn1/gamma", "bn1/beta", "head/kernel", "head/bias"]),
        )
        original_bn = self.cnn.get_layer("backbone").get_layer("bn1")
        for a, b in zip(bn.weights, original_bn.weights):
            self.assertAllClose(a, b, atol=0, rtol=0, msg=a.path)
        self.assertAllClose(adapted.predict(self.x, verbose=0), self.cnn.predict(self.x, verbose=0), atol=1e-6)
        report = adapter_parameter_report(adapted)
        self.assertEqual(
            report["by_role"], {"adapter": 128, "lora": 0, "dora": 0, "normalization": 16, "head": 27, "other": 0}
        )
        self.assertEqual(report["trainable_params"], 128 + 16 + 27)
        statistics = [bn.moving_mean, bn.moving_variance]
        gamma, beta = bn.gamma.numpy().copy(), bn.beta.numpy().copy()
        frozen = [backbone.get_layer(name) for name in ("conv1", "dw", "conv2")] + statistics
        self.run_fit_test(adapted, self.x, self.y, batch_size=6, steps=3, frozen=frozen)
        self.assertNotAllClose(bn.gamma, gamma)
        self.assertNotAllClose(bn.beta, beta)
        # The task weights include the (unchanged) statistics; a reload keeps the layer type.
        self.assertIn("backbone/bn1/gamma", get_adapter_weights(adapted))
        reloaded = self.run_serialization_test(adapted, self.x)
        self.assertIs(type(reloaded.get_layer("backbone").get_layer("bn1")), FrozenBatchNormalization)

    def test_default_and_true_keep_plain_batchnorm(self):
        for value, trainable in ((False, False), (True, True)):
            adapted = add_adapters(self.cnn, "conv2", "conv_series", train_batchnorm=value)
            bn = adapted.get_layer("backbone").get_layer("bn1")
            self.assertIs(type(bn), keras.layers.BatchNormalization)
            self.assertEqual(bn.trainable, trainable)

    def test_bad_value(self):
        for value in ("yes", 1, None):
            self.assertRaisesValueError(
                ["`train_batchnorm` must be False", "'affine'", f"Received: train_batchnorm={value!r}"],
                add_adapters,
                self.cnn,
                "conv1",
                train_batchnorm=value,
            )
