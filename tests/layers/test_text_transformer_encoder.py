import math
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.layers import word_tokenizer
from tests.test_case import TestCase


def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def numpy_encoder(layer, ids, segment_ids=None):
    """Pre-LN transformer (Vaswani et al. 2017; CLIP's text tower; BERT's segment embedding) written in NumPy;
    with `adapter_dim`, a ReLU bottleneck adapter after the attention and the MLP outputs, before each residual
    add (Houlsby et al. 2019, Fig. 2)."""
    w = lambda v: np.asarray(v.numpy(), "float64")  # noqa: E731

    def adapter(h, adapters, i):
        if layer.adapter_dim is None:
            return h
        a = adapters[i]
        return h + np.maximum(h @ w(a.down_kernel) + w(a.down_bias), 0.0) @ w(a.up_kernel) + w(a.up_bias)

    ids = np.asarray(ids)
    segment_ids = np.zeros_like(ids) if segment_ids is None else np.asarray(segment_ids)
    outputs = []
    for row, segments in zip(ids, segment_ids):
        keep = row != 0
        x = w(layer.token_embedding.embeddings)[row] + w(layer.position_embedding)[: len(row)]
        if layer.num_segments is not None:
            x = x + w(layer.segment_embedding.embeddings)[segments]
        for i in range(layer.num_layers):
            att = layer.attentions[i]
            h = layer_norm(x, w(layer.attention_norms[i].gamma), w(layer.attention_norms[i].beta))
            q = np.einsum("ld,dhk->lhk", h, w(att._query_dense.kernel)) + w(att._query_dense.bias)
            k = np.einsum("ld,dhk->lhk", h, w(att._key_dense.kernel)) + w(att._key_dense.bias)
            v = np.einsum("ld,dhk->lhk", h, w(att._value_dense.kernel)) + w(att._value_dense.bias)
            scores = np.einsum("qhd,phd->hqp", q, k) / math.sqrt(q.shape[-1])
            scores = np.where(keep[None, None, :], scores, -np.inf)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            context = np.einsum("hqp,phd->qhd", probs, v)
            out = np.einsum("qhd,hdo->qo", context, w(att._output_dense.kernel)) + w(att._output_dense.bias)
            x = x + adapter(out, layer.attention_adapters, i)
            h = layer_norm(x, w(layer.mlp_norms[i].gamma), w(layer.mlp_norms[i].beta))
            h = gelu(h @ w(layer.mlp_ins[i].kernel) + w(layer.mlp_ins[i].bias))
            x = x + adapter(h @ w(layer.mlp_outs[i].kernel) + w(layer.mlp_outs[i].bias), layer.mlp_adapters, i)
        x = layer_norm(x, w(layer.final_norm.gamma), w(layer.final_norm.beta))
        outputs.append(x[keep].mean(0))
    return np.stack(outputs)


def padded_ids():
    """Four rows of 7 token ids in [1, 20), two of them padded with 0 (after 5 and after 2 tokens)."""
    ids = np.random.default_rng(0).integers(1, 20, size=(4, 7)).astype("int32")
    ids[0, 5:] = 0
    ids[2, 2:] = 0
    return ids


class TextTransformerEncoderTest(TestCase):
    def setUp(self):
        super().setUp()
        self.ids = padded_ids()

    def test_matches_numpy_transformer(self):
        layer = TextTransformerEncoder(20, 8, embedding_dim=8, num_layers=2, num_heads=2, intermediate_dim=16)
        layer(self.ids)
        # Move LayerNorm / bias weights off their defaults so every weight matters.
        rng = np.random.default_rng(1)
        for v in layer.weights:
            v.assign(v.numpy() + 0.1 * rng.normal(size=v.shape).astype("float32"))
        self.assertAllClose(layer(self.ids), numpy_encoder(layer, self.ids), atol=1e-4, rtol=1e-4)

    def test_padding_does_not_change_the_embedding(self):
        layer = TextTransformerEncoder(20, 12, embedding_dim=8, num_layers=1, num_heads=2)
        padded = np.concatenate([self.ids, np.zeros((4, 5), "int32")], axis=1)
        self.assertAllClose(layer(self.ids), layer(padded), atol=1e-5)

    def test_token_outputs_without_pooling(self):
        pooled = TextTransformerEncoder(20, 8, embedding_dim=8, num_layers=1, num_heads=2)
        tokens = TextTransformerEncoder(20, 8, embedding_dim=8, num_layers=1, num_heads=2, pooling=None)
        pooled(self.ids), tokens(self.ids)
        tokens.set_weights(pooled.get_weights())
        per_token = tokens(self.ids).numpy()
        self.assertEqual(per_token.shape, (4, 7, 8))
        keep = (self.ids != 0)[:, :, None]
        mean = (per_token * keep).sum(1) / keep.sum(1)  # the pooled output is their mean over real tokens
        self.assertAllClose(pooled(self.ids), mean, atol=1e-5)
        self.run_layer_test(
            TextTransformerEncoder,
            {
                "vocabulary_size": 20,
                "sequence_length": 7,
                "embedding_dim": 8,
                "num_layers": 1,
                "num_heads": 2,
                "pooling": None,
            },
            input_shape=(4, 7),
            expected_output_shape=(4, 7, 8),
            input_data=self.ids.astype("float32"),
            expected_num_trainable_weights=2 + 4 + 8 + 4 + 2,
        )
        self.assertRaisesValueError(["`pooling`", "'max'"], TextTransformerEncoder, 20, 8, pooling="max")

    def test_layer_basics(self):
        self.run_layer_test(
            TextTransformerEncoder,
            {"vocabulary_size": 20, "sequence_length": 7, "embedding_dim": 8, "num_layers": 1, "num_heads": 2},
            input_shape=(4, 7),
            expected_output_shape=(4, 8),
            input_data=self.ids.astype("float32"),
            expected_num_trainable_weights=2 + 4 + 8 + 4 + 2,
        )

    def test_gradients_reach_every_weight(self):
        layer = TextTransformerEncoder(20, 7, embedding_dim=8, num_layers=1, num_heads=2)
        layer(self.ids)
        with tf.GradientTape() as tape:
            value = keras.ops.sum(layer(self.ids) ** 2)
        grads = tape.gradient(value, layer.trainable_weights)
        self.assertTrue(all(g is not None and np.any(np.asarray(g) != 0) for g in grads))

    def test_gradients_match_finite_differences(self):
        # float64 layer; differentiate w.r.t. the token table and the position embeddings.
        layer = TextTransformerEncoder(6, 4, embedding_dim=4, num_layers=1, num_heads=1, dtype="float64")
        ids = np.array([[1, 5, 2, 0], [3, 3, 4, 1]])
        layer(ids)
        names = [v.path for v in layer.trainable_variables]
        table = names.index(layer.token_embedding.embeddings.path)
        position = names.index(layer.position_embedding.path)
        values = [v.numpy() for v in layer.trainable_variables]

        def fn(token_table, positions):
            weights = list(values)
            weights[table], weights[position] = token_table, positions
            out, _ = layer.stateless_call(weights, [], ids)
            return keras.ops.sum(keras.ops.sin(out))

        self.run_gradient_check(fn, [values[table], values[position]], eps=1e-5, atol=1e-6, rtol=1e-4)

    def test_errors(self):
        self.assertRaisesValueError(
            "`num_heads` must divide `embedding_dim`", TextTransformerEncoder, 20, 7, embedding_dim=6, num_heads=4
        )
        self.assertRaisesValueError("`vocabulary_size` must be an integer >= 2", TextTransformerEncoder, 1, 7)
        self.assertRaisesValueError("`sequence_length` must be a positive integer", TextTransformerEncoder, 20, 0)
        self.assertRaisesValueError("`dropout` must be a number in [0, 1)", TextTransformerEncoder, 20, 7, dropout=1.0)
        layer = TextTransformerEncoder(20, 4, embedding_dim=8, num_heads=2)
        self.assertRaisesValueError("`sequence_length` must be >= the number of tokens", layer, self.ids)
        layer = TextTransformerEncoder(20, 7, embedding_dim=8, num_heads=2)
        self.assertRaisesValueError("(batch, sequence_length)", layer, self.ids[..., None])

    def test_partial_freezing_survives_keras_reload_and_resume(self):
        # Keras sets `trainable` on the variables that exist when it is assigned, and a subclassed
        # layer's sublayers are not in the `.keras` config: the encoder records them itself.
        from keras_transfer import recipes

        rng = np.random.default_rng(0)
        x = rng.integers(2, 20, (64, 6)).astype("int32")
        y = (x == 5).any(axis=1).astype("int64")
        encoder = TextTransformerEncoder(20, 6, embedding_dim=8, num_layers=2, num_heads=2)
        model = recipes.build_classifier(encoder, 2)
        model, _ = recipes.fine_tune(model, x, y, epochs=1, probe_epochs=1, blocks="last", verbose=0)
        frozen = encoder.frozen_names()
        self.assertIn("attentions.0", frozen)
        self.assertIn("position_embedding", frozen)
        self.assertNotIn("attentions.1", frozen)
        path = os.path.join(self.get_temp_dir(), "partly_frozen.keras")
        model.save(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reloaded = keras.saving.load_model(path)
        self.assertFalse([w for w in caught if "Skipping variable loading for optimizer" in str(w.message)])
        self.assertEqual([w.path for w in reloaded.trainable_weights], [w.path for w in model.trainable_weights])
        self.assertEqual(int(reloaded.optimizer.iterations), int(model.optimizer.iterations))
        self.assertAllClose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
        self.assertRaisesValueError(
            ["`frozen` must name sublayers", "unknown ['attentions.9']"], TextTransformerEncoder, 20, 6,
            embedding_dim=8, num_heads=2, frozen=["attentions.9"],
        )  # fmt: skip

    def test_out_of_range_ids_fail_eagerly_and_in_a_graph(self):
        # A negative id would index the embedding table from the end, silently.
        layer = TextTransformerEncoder(20, 7, embedding_dim=8, num_heads=2)
        model = keras.Sequential([keras.Input((7,), dtype="int32"), layer])
        for bad, shown in ((-3, "from -3"), (20, "to 20")):
            ids = self.ids.copy()
            ids[0, 1] = bad
            self.assertRaisesValueError(["`token_ids` must lie in [0, vocabulary_size=20)", shown], layer, ids)
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"must lie in \[0, vocabulary_size=20\)"):
                model.predict(ids, verbose=0)


class SegmentEmbeddingTest(TestCase):
    def setUp(self):
        super().setUp()
        self.ids = np.array([[2, 5, 6, 3, 7, 3, 0], [2, 9, 3, 4, 4, 8, 3]], "int32")
        self.segments = np.array([[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]], "int32")

    def perturbed(self, **kwargs):
        layer = TextTransformerEncoder(20, 8, embedding_dim=8, num_layers=1, num_heads=2, num_segments=2, **kwargs)
        layer({"token_ids": self.ids, "segment_ids": self.segments})
        rng = np.random.default_rng(2)
        for v in layer.weights:
            v.assign(v.numpy() + 0.1 * rng.normal(size=v.shape).astype("float32"))
        return layer

    def test_matches_numpy_with_segments(self):
        layer = self.perturbed()
        self.assertEqual(layer.segment_embedding.embeddings.shape, (2, 8))
        pairs = {"token_ids": self.ids, "segment_ids": self.segments}
        self.assertAllClose(layer(pairs), numpy_encoder(layer, self.ids, self.segments), atol=1e-4, rtol=1e-4)
        # Plain token ids: segment 0 everywhere; the segments change the output.
        zeros = {"token_ids": self.ids, "segment_ids": np.zeros_like(self.segments)}
        self.assertAllClose(layer(self.ids), layer(zeros), atol=1e-6)
        self.assertAllClose(layer(self.ids), numpy_encoder(layer, self.ids), atol=1e-4, rtol=1e-4)
        self.assertNotAllClose(layer(pairs), layer(self.ids), atol=1e-3)
        self.assertEqual(tuple(layer.compute_output_shape({"token_ids": (2, 7), "segment_ids": (2, 7)})), (2, 8))

    def test_config_is_backward_compatible_and_layer_basics(self):
        old = TextTransformerEncoder(20, 7, embedding_dim=8, num_layers=1, num_heads=2).get_config()
        old.pop("num_segments")  # a config written before segments existed
        restored = TextTransformerEncoder.from_config(old)
        self.assertIsNone(restored.num_segments)
        restored(self.ids)
        self.assertEqual(len(restored.weights), 2 + 4 + 8 + 4 + 2)  # no segment table
        self.run_layer_test(
            TextTransformerEncoder,
            {
                "vocabulary_size": 20,
                "sequence_length": 7,
                "embedding_dim": 8,
                "num_heads": 2,
                "num_layers": 1,
                "num_segments": 3,
            },
            input_shape=(2, 7),
            expected_output_shape=(2, 8),
            input_data=self.ids.astype("float32"),  # the harness's functional model takes float inputs
            expected_num_trainable_weights=2 + 4 + 8 + 4 + 2 + 1,  # + the segment table
        )

    def test_dict_inputs_round_trip_and_export(self):
        token_ids = keras.Input((7,), dtype="int32", name="token_ids")
        segment_ids = keras.Input((7,), dtype="int32", name="segment_ids")
        inputs = {"token_ids": token_ids, "segment_ids": segment_ids}
        encoder = TextTransformerEncoder(20, 7, embedding_dim=8, num_layers=1, num_heads=2, num_segments=2)
        model = keras.Model(inputs, encoder(inputs))
        pairs = {"token_ids": self.ids, "segment_ids": self.segments}
        self.run_serialization_test(model, pairs)
        self.run_export_test(model, pairs)

    def test_gradients_match_finite_differences(self):
        layer = TextTransformerEncoder(
            6, 4, embedding_dim=4, num_layers=1, num_heads=1, num_segments=2, dtype="float64"
        )
        pairs = {
            "token_ids": np.array([[1, 5, 2, 0], [3, 3, 4, 1]]),
            "segment_ids": np.array([[0, 1, 1, 0], [0, 0, 1, 1]]),
        }
        layer(pairs)
        names = [v.path for v in layer.trainable_variables]
        index = names.index(layer.segment_embedding.embeddings.path)
        values = [v.numpy() for v in layer.trainable_variables]

        def fn(segment_table):
            weights = list(values)
            weights[index] = segment_table
            out, _ = layer.stateless_call(weights, [], pairs)
            return keras.ops.sum(keras.ops.sin(out))

        self.run_gradient_check(fn, [values[index]], eps=1e-5, atol=1e-6, rtol=1e-4)

    def test_errors(self):
        self.assertRaisesValueError(
            "`num_segments` must be a positive integer", TextTransformerEncoder, 20, 7, num_segments=0
        )
        layer = TextTransformerEncoder(20, 7, embedding_dim=8, num_heads=2, num_segments=2)
        self.assertRaisesValueError(
            ["`segment_ids` must lie in [0, num_segments=2)", "2 to 2"],
            layer,
            {"token_ids": self.ids, "segment_ids": np.full_like(self.ids, 2)},
        )
        self.assertRaisesValueError(["num_segments", "'mask'"], layer, {"token_ids": self.ids, "mask": self.ids})
        plain = TextTransformerEncoder(20, 7, embedding_dim=8, num_heads=2)
        self.assertRaisesValueError(
            ["num_segments=None", "set num_segments"], plain, {"token_ids": self.ids, "segment_ids": self.segments}
        )


class WordTokenizerTest(TestCase):
    def test_vocabulary_padding_and_oov(self):
        tok = word_tokenizer(["A photo of the number Seven!", "handwritten 7"], sequence_length=6)
        vocab = tok.get_vocabulary()
        self.assertEqual(vocab[:2], ["", "[UNK]"])
        ids = tok(["a photo of 7", "zebra seven"]).numpy()
        expected0 = [vocab.index(w) for w in ["a", "photo", "of", "7"]] + [0, 0]
        self.assertEqual(ids[0].tolist(), expected0)
        self.assertEqual(ids[1].tolist(), [1, vocab.index("seven"), 0, 0, 0, 0])
        explicit = word_tokenizer(vocabulary=["seven", "7"], sequence_length=3)
        self.assertEqual(explicit(["7 seven dog"]).numpy().tolist(), [[3, 2, 1]])

    def test_errors(self):
        self.assertRaisesValueError("Exactly one of `texts` and `vocabulary`", word_tokenizer)
        self.assertRaisesValueError("Exactly one of", word_tokenizer, ["a"], vocabulary=["a"])
        self.assertRaisesValueError("`texts` must contain at least one string", word_tokenizer, [])
        self.assertRaisesValueError(["`texts` must be a list of strings", "texts=[text]"], word_tokenizer, "a cat")
        self.assertRaisesValueError(
            "`sequence_length` must be a positive integer", word_tokenizer, ["a"], sequence_length=0
        )
