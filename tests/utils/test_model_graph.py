"""keras_transfer.utils.model_graph: the private Keras API it relies on, pinned, and its walkers.

`PrivateKerasApiTest` has one test per private Keras attribute or function that
model_graph reads. Each reads the attribute directly (not through model_graph), so
when a Keras release renames or reshapes it, the failure names the attribute and the
Keras version, and model_graph.py is the one file to update.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.utils import model_graph
from tests.test_case import TestCase

KERAS_VERSION = keras.__version__


def chain(name="chain"):
    inputs = keras.Input((3,), name="x")
    h = keras.layers.Dense(4, name="d1")(inputs)
    outputs = keras.layers.Dense(2, name="d2")(h)
    return keras.Model(inputs, outputs, name=name)


def nested():
    """A classifier around a functional backbone (conv-BN) with an attention block on top."""
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(4, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    image = keras.Input((4, 4, 2), name="image")
    h = keras.layers.Reshape((16, 4), name="tokens")(backbone(image))
    h = keras.layers.MultiHeadAttention(1, 4, name="mha")(h, h)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D(name="pool")(h))
    return keras.Model(image, outputs, name="classifier")


class PrivateKerasApiTest(TestCase):
    """One test per private Keras name that keras_transfer/utils/model_graph.py relies on."""

    def assertPinned(self, attribute, check):
        """Runs `check()`; fails naming `attribute` and the Keras version if it raises or is falsy."""
        hint = f"keras_transfer/utils/model_graph.py relies on it (Keras {KERAS_VERSION})"
        try:
            ok = check()
        except Exception as error:  # noqa: BLE001 - any change of the private API is the failure
            self.fail(f"Keras {KERAS_VERSION} changed `{attribute}`: {type(error).__name__}: {error}. {hint}")
        if not ok:
            self.fail(f"Keras {KERAS_VERSION} changed `{attribute}`: it no longer behaves as pinned. {hint}")

    def test_functional_class(self):
        def check():
            from keras.src.models.functional import Functional

            class Subclassed(keras.Model):
                def call(self, x):
                    return x

            sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            return (
                isinstance(chain(), Functional)
                and not isinstance(sequential, Functional)
                and not isinstance(Subclassed(), Functional)
            )

        self.assertPinned("keras.src.models.functional.Functional", check)

    def test_layer_inbound_nodes(self):
        def check():
            inputs = keras.Input((3,))
            shared = keras.layers.Dense(3)
            keras.Model(inputs, shared(shared(inputs)))
            return isinstance(shared._inbound_nodes, list) and len(shared._inbound_nodes) == 2

        self.assertPinned("Layer._inbound_nodes", check)

    def test_node_operation(self):
        model = chain()
        self.assertPinned(
            "Node.operation", lambda: model.get_layer("d2")._inbound_nodes[0].operation is model.get_layer("d2")
        )

    def test_node_input_tensors(self):
        model = chain()
        self.assertPinned(
            "Node.input_tensors",
            lambda: list(model.get_layer("d2")._inbound_nodes[0].input_tensors) == [model.get_layer("d1").output],
        )

    def test_node_outputs(self):
        model = chain()
        self.assertPinned(
            "Node.outputs", lambda: list(model.get_layer("d2")._inbound_nodes[0].outputs) == [model.outputs[0]]
        )

    def test_node_parent_nodes(self):
        model = chain()

        def check():
            parents = model.get_layer("d2")._inbound_nodes[0].parent_nodes
            return len(parents) == 1 and parents[0].operation is model.get_layer("d1")

        self.assertPinned("Node.parent_nodes", check)

    def test_keras_tensor_keras_history(self):
        model = chain()

        def check():
            history = model.outputs[0]._keras_history
            return history.operation is model.get_layer("d2") and history[0] is model.get_layer("d2")

        self.assertPinned("KerasTensor._keras_history", check)

    def test_functional_nodes_by_depth(self):
        model = chain()

        def check():
            nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
            return {node.operation.name for node in nodes} == {"x", "d1", "d2"}

        self.assertPinned("Functional._nodes_by_depth", check)

    def test_layer_flatten_layers(self):
        layer = nested().get_layer("mha")

        def check():
            names = [sub.name for sub in layer._flatten_layers(include_self=False, recursive=True)]
            return {"query", "key", "value", "attention_output"} <= set(names) and "mha" not in names

        self.assertPinned("Layer._flatten_layers(include_self=False, recursive=True)", check)

    def test_layer_layers(self):
        layer = nested().get_layer("mha")
        self.assertPinned("Layer._layers", lambda: "query" in [sub.name for sub in layer._layers])

    def _check_base_variable(self, layer, attribute, public, x):
        layer(x)
        base = getattr(layer, attribute)
        layer.enable_lora(2)
        getattr(layer, f"lora_{public}_b").assign(np.ones(getattr(layer, f"lora_{public}_b").shape))
        merged = keras.ops.convert_to_numpy(getattr(layer, public))
        return (
            getattr(layer, attribute) is base
            and any(base is v for v in layer.weights)
            and not np.allclose(merged, keras.ops.convert_to_numpy(base))
        )

    def test_dense_kernel(self):
        self.assertPinned(
            "Dense._kernel",
            lambda: self._check_base_variable(keras.layers.Dense(3), "_kernel", "kernel", np.ones((1, 4), "float32")),
        )

    def test_einsum_dense_kernel(self):
        self.assertPinned(
            "EinsumDense._kernel",
            lambda: self._check_base_variable(
                keras.layers.EinsumDense("ab,bc->ac", output_shape=3), "_kernel", "kernel", np.ones((1, 4), "float32")
            ),
        )

    def test_conv_kernel(self):
        self.assertPinned(
            "Conv2D._kernel",
            lambda: self._check_base_variable(
                keras.layers.Conv2D(3, 1), "_kernel", "kernel", np.ones((1, 2, 2, 4), "float32")
            ),
        )

    def test_layer_tracker(self):
        layer = keras.layers.Dense(3)
        layer.build((None, 4))

        def check():
            model_graph.add_variables_after_build(layer, lambda: layer.add_weight(name="extra", shape=(2,)))
            return [v.name for v in layer.weights] == ["kernel", "bias", "extra"]

        self.assertPinned("Layer._tracker.unlock() / .lock()", check)

    def test_embedding_embeddings(self):
        self.assertPinned(
            "Embedding._embeddings",
            lambda: self._check_base_variable(
                keras.layers.Embedding(5, 3), "_embeddings", "embeddings", np.array([[1, 2]])
            ),
        )

    def test_variable_value(self):
        variable = keras.Variable(np.ones(2, "float32"))
        self.assertPinned("keras.Variable._value", lambda: isinstance(variable._value, tf.Variable))

    def test_model_distribute_strategy(self):
        def check():
            outside = chain()
            strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
            with strategy.scope():
                inside = chain("inside")
            return outside._distribute_strategy is None and inside._distribute_strategy is strategy

        self.assertPinned("Model._distribute_strategy", check)

    def test_model_compile_loss(self):
        def check():
            model = chain()
            before = getattr(model, "_compile_loss", "missing")
            model.compile(optimizer="sgd", loss="mse")
            value = model._compile_loss(np.zeros((2, 2), "float32"), np.ones((2, 2), "float32"))
            return before is None and np.isclose(float(keras.ops.convert_to_numpy(value)), 1.0)

        self.assertPinned("Model._compile_loss", check)

    def test_model_symbolic_build(self):
        def check():
            model = keras.Sequential([keras.layers.Dense(2)])
            model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
            model._symbolic_build(data_batch=(keras.KerasTensor((None, 3)), keras.KerasTensor((None, 2))))
            return model.built and model.optimizer.built

        self.assertPinned("Model._symbolic_build(data_batch=...)", check)

    def test_batch_normalization_moments(self):
        def check():
            layer = keras.layers.BatchNormalization()
            x = np.arange(12, dtype="float32").reshape(4, 3)
            layer(x)
            mean, variance = layer._moments(keras.ops.convert_to_tensor(x), None)
            return np.allclose(mean, x.mean(0)) and np.allclose(variance, x.var(0))

        self.assertPinned("BatchNormalization._moments(inputs, mask)", check)

    def test_batch_normalization_moments_instance_override(self):
        def check():
            layer = keras.layers.BatchNormalization()
            calls = []

            def moments(self, inputs, mask):
                calls.append(mask)
                return type(self)._moments(self, inputs, mask)

            import types

            object.__setattr__(layer, "_moments", types.MethodType(moments, layer))
            layer(np.ones((4, 3), "float32"), training=True)
            return calls == [None]

        self.assertPinned("BatchNormalization._moments (called by `call` in training mode)", check)

    def test_batch_normalization_reduction_axes(self):
        def check():
            layer = keras.layers.BatchNormalization()
            layer.build((None, 5, 3))
            return list(layer._reduction_axes) == [0, 1]

        self.assertPinned("BatchNormalization._reduction_axes", check)

    def test_file_utils_get_file(self):
        class Called(Exception):
            pass

        def fake(*args, **kwargs):
            raise Called(kwargs.get("origin") or args[1:2])

        def check():
            from keras.src.utils import file_utils

            original = file_utils.get_file
            file_utils.get_file = fake
            try:
                keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights="imagenet", include_top=False)
            except Called:
                return True
            finally:
                file_utils.get_file = original
            return False

        self.assertPinned("keras.src.utils.file_utils.get_file (keras.applications downloads through it)", check)


class PrivateKerasHubApiTest(TestCase):
    def test_merge_padding_and_attention_mask(self):
        keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is an optional extra")
        # The merged mask must be what keras-hub's TransformerEncoder applies: outputs equal with and without
        # re-merging, and padding visible in the mask.
        x = np.random.default_rng(0).normal(size=(2, 4, 8)).astype("float32")
        padding = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], "bool")
        try:
            merged = np.asarray(model_graph.merge_padding_and_attention_mask(x, padding, None))
        except Exception as error:  # noqa: BLE001 - any change of the private API is the failure
            self.fail(
                f"keras-hub {keras_hub.__version__} changed `keras_hub.src.layers.modeling.transformer_layer_utils."
                f"merge_padding_and_attention_mask`: {type(error).__name__}: {error}"
            )
        self.assertEqual(merged.shape[0], 2)
        self.assertEqual(merged.shape[-1], 4)
        self.assertTrue(np.array_equal(merged[:, 0, :].astype(bool), padding))


class WalkerTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        cls.model = nested()

    def test_iter_leaf_layers(self):
        paths = [path for path, _ in model_graph.iter_leaf_layers(self.model)]
        self.assertEqual(paths, ["backbone/conv", "backbone/bn", "tokens", "mha", "pool", "head"])

    def test_iter_sublayers_and_iter_all_layers(self):
        mha = self.model.get_layer("mha")
        subs = [path for path, _ in model_graph.iter_sublayers(mha, "mha")]
        named = [path for path in subs if not path.startswith(("mha/softmax", "mha/dropout"))]
        self.assertEqual(named, ["mha/query", "mha/key", "mha/value", "mha/attention_output"])
        self.assertLen(subs, 6)  # + a Softmax and a Dropout with generated names
        self.assertEqual(model_graph.iter_sublayers(object(), "x"), [])
        all_paths = [path for path, _ in model_graph.iter_all_layers(self.model)]
        self.assertEqual(all_paths, ["backbone/conv", "backbone/bn", "tokens", "mha"] + subs + ["pool", "head"])
        self.assertEqual([s.name for s in model_graph.layer_and_sublayers(mha)], ["mha"] + [p[4:] for p in subs])

    def test_iter_layers_models_and_functional_models(self):
        names = [layer.name for layer in model_graph.iter_layers(self.model)]
        self.assertEqual(names[:2], ["image", "backbone"])
        self.assertEqual(names[3:5], ["conv", "bn"])  # names[2]: the backbone's Input
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(names[5:], ["tokens", "mha", "pool", "head"])  # layers with a `layers` list only
        self.assertEqual([m.name for m in model_graph.iter_models(self.model)], ["classifier", "backbone"])
        seq = keras.Sequential([keras.Input((4, 4, 2)), self.model.get_layer("backbone")], name="seq")
        self.assertEqual([m.name for m in model_graph.iter_functional_models(seq)], ["backbone"])

    def test_batch_norm_and_lora_layers(self):
        self.assertEqual([layer.name for layer in model_graph.batch_norm_layers(self.model)], ["bn"])
        self.assertEqual(model_graph.batch_norm_layers(chain()), [])
        mha = nested().get_layer("mha")
        query = dict(model_graph.iter_sublayers(mha, "mha"))["mha/query"]
        query.enable_lora(2)
        self.assertEqual(model_graph.lora_layers(mha), [query])
        model_graph.train_only_lora_factors(query)
        self.assertEqual(sorted(v.name for v in query.trainable_weights), ["lora_kernel_a", "lora_kernel_b"])

    def test_paired_sublayers(self):
        other = nested()
        pairs = model_graph.paired_sublayers(other.get_layer("mha"), self.model.get_layer("mha"))
        self.assertEqual([(a.name, b.name) for a, b in pairs][:2], [("mha", "mha"), ("query", "query")])
        self.assertTrue(all(a is not b for a, b in pairs))

    def test_graph_nodes_and_tensors(self):
        model = chain()
        d1, d2 = model.get_layer("d1"), model.get_layer("d2")
        self.assertEqual(len(model_graph.inbound_nodes(d2)), 1)
        self.assertEqual(model_graph.inbound_nodes(keras.layers.Dense(2)), [])
        self.assertIs(model_graph.tensor_producer(model.outputs[0]), d2)
        self.assertIs(model_graph.tensor_producer(model_graph.inbound_nodes(d2)[0].input_tensors[0]), d1)
        self.assertEqual({node.operation.name for node in model_graph.graph_nodes(model)}, {"x", "d1", "d2"})

    def test_chain_layers(self):
        model = chain()
        self.assertEqual([layer.name for layer in model_graph.chain_layers(model)], ["d1", "d2"])
        seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="s")])
        self.assertEqual([layer.name for layer in model_graph.chain_layers(seq)], ["s"])
        inputs = keras.Input((3,))
        branch = keras.Model(inputs, keras.layers.Add()([keras.layers.Dense(3)(inputs), inputs]))
        self.assertIsNone(model_graph.chain_layers(branch))
        self.assertIsNone(model_graph.chain_layers(self.model))


class MatcherTest(TestCase):
    def test_is_functional_and_check_graph_model(self):
        class Subclassed(keras.Model):
            def call(self, x):
                return x

        self.assertTrue(model_graph.is_functional(chain()))
        self.assertFalse(model_graph.is_functional(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])))
        self.assertFalse(model_graph.is_functional(Subclassed()))
        model_graph.check_graph_model(chain())
        self.assertRaisesValueError(
            ["`net` must be a Functional or Sequential", "Subclassed"],
            model_graph.check_graph_model,
            Subclassed(),
            "net",
        )
        self.assertRaisesValueError("must be a keras.Model", model_graph.check_graph_model, keras.layers.Dense(2))
        self.assertRaisesValueError(
            "must be built", model_graph.check_graph_model, keras.Sequential([keras.layers.Dense(2)])
        )

    def test_layer_matcher_and_find_layers(self):
        model = nested()
        match = model_graph.layer_matcher([r"d\d", keras.layers.BatchNormalization, lambda layer: layer.name == "pool"])
        self.assertTrue(match(keras.layers.Dense(1, name="d7")))
        self.assertFalse(match(keras.layers.Dense(1, name="d77x")))
        found = model_graph.find_layers(model, [keras.layers.BatchNormalization, "pool"])
        self.assertEqual([path for path, _ in found], ["backbone/bn", "pool"])
        self.assertEqual([path for path, _ in model_graph.find_layers(model, "query", sublayers=True)], ["mha/query"])
        self.assertRaisesValueError(
            ["`layers` matches no layer", "available layers: backbone/conv"],
            model_graph.find_layers,
            model,
            "query",
            "layers",
        )


class CloneTest(TestCase):
    def test_clone_graph_and_copy_weights(self):
        keras.utils.set_random_seed(0)
        model = nested()
        x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype("float32")
        calls = []

        def call_layer(new, orig, *args, **kwargs):
            calls.append(orig.name)
            return new(*args, **kwargs)

        clone, pairs = model_graph.clone_graph(model, call_layer=call_layer)
        self.assertEqual({orig.name for _, orig in pairs} >= {"conv", "bn", "mha", "head"}, True)
        self.assertTrue(all(new is not orig for new, orig in pairs))
        self.assertIn("head", calls)
        model_graph.copy_weights(pairs)
        self.assertAllClose(clone.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)

    def test_clone_layer_hook_and_sequential(self):
        seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a")], name="seq")
        self.assertTrue(model_graph.is_functional(model_graph.as_functional(seq)))
        clone, pairs = model_graph.clone_graph(
            seq, clone_layer=lambda layer: keras.layers.Dense(2, use_bias=False, name=layer.name)
        )
        self.assertEqual(len(clone.get_layer("a").weights), 1)
        self.assertEqual(
            model_graph.clone_layer_from_config(seq.get_layer("a")).get_config(), seq.get_layer("a").get_config()
        )


class VariableAndTrainingTest(TestCase):
    def test_base_weight(self):
        dense = keras.layers.Dense(2)
        dense.build((None, 3))
        self.assertIs(model_graph.base_weight(dense), dense.kernel)
        kernel = dense.kernel
        dense.enable_lora(1)
        self.assertIs(model_graph.base_weight(dense), kernel)  # `dense.kernel` is now the merged value
        self.assertFalse(isinstance(dense.kernel, keras.Variable))
        embedding = keras.layers.Embedding(4, 2)
        embedding.build((None,))
        self.assertIs(model_graph.base_weight(embedding), embedding.embeddings)
        depthwise = keras.layers.DepthwiseConv2D(3)
        depthwise.build((None, 5, 5, 2))
        self.assertIs(model_graph.base_weight(depthwise), depthwise.kernel)

    def test_backend_variable(self):
        variable = keras.Variable(np.zeros(2, "float32"))
        self.assertIsInstance(model_graph.backend_variable(variable), tf.Variable)
        plain = tf.Variable(1.0)
        self.assertIs(model_graph.backend_variable(plain), plain)

    def test_strategy_loss_and_symbolic_build(self):
        model = keras.Sequential([keras.layers.Dense(2)])
        self.assertIsNone(model_graph.distribute_strategy(model))
        self.assertIsNone(model_graph.compiled_loss(model))
        model.compile(optimizer="sgd", loss="mse")
        self.assertIsNotNone(model_graph.compiled_loss(model))
        model_graph.symbolic_build(model, (keras.KerasTensor((None, 3)), keras.KerasTensor((None, 2))))
        self.assertTrue(model.built)
        model_graph.symbolic_build(object(), None)  # no such step: nothing happens

    def test_override_batchnorm_moments(self):
        layer = keras.layers.BatchNormalization()
        x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
        expected = keras.ops.convert_to_numpy(layer(x, training=True))
        seen = []

        def moments(inputs, axes):
            seen.append(tuple(axes))
            return keras.ops.mean(inputs, axis=axes), keras.ops.var(inputs, axis=axes)

        self.assertTrue(model_graph.override_batchnorm_moments(layer, moments))
        self.assertAllClose(layer(x, training=True), expected, atol=1e-5)
        self.assertEqual(seen, [(0,)])
        self.assertFalse(model_graph.override_batchnorm_moments(keras.layers.Dense(2), moments))

    def test_wrapped_get_file_restores(self):
        from keras.src.utils import file_utils

        original = file_utils.get_file
        received = []

        def wrapper(get_file):
            received.append(get_file)
            return lambda *args, **kwargs: "wrapped"

        with model_graph.wrapped_get_file(wrapper) as patched:
            self.assertTrue(patched)
            self.assertEqual(file_utils.get_file("f", "http://example.invalid/f"), "wrapped")
        self.assertIs(file_utils.get_file, original)
        self.assertEqual(received, [original])
        with self.assertRaises(KeyError):
            with model_graph.wrapped_get_file(wrapper):
                raise KeyError("restored on errors too")
        self.assertIs(file_utils.get_file, original)
