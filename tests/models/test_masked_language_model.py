import keras
import numpy as np
import pytest

from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.models import MaskedLanguageModel
from tests.test_case import TestCase

VOCABULARY = 16


def _encoder(pooling=None):
    return TextTransformerEncoder(VOCABULARY, 8, embedding_dim=16, num_layers=1, num_heads=2, pooling=pooling)


def _corpus(n=256, seed=0):
    """Sequences that count up from a random start: every token is predictable from its neighbours."""
    starts = np.random.default_rng(seed).integers(2, VOCABULARY - 8, size=n)
    return (starts[:, None] + np.arange(8)[None, :]).astype("int32")


def _gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def _layer_norm(x, gamma, beta, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


class MaskedLanguageModelTest(TestCase):
    def build(self, **kwargs):
        model = MaskedLanguageModel(_encoder(), VOCABULARY, seed=3, **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        return model

    def test_loss_matches_numpy_head_and_cross_entropy(self):
        model = self.build()
        ids = _corpus(6)
        result = model.evaluate(ids, batch_size=6, verbose=0, return_dict=True)
        masked, selected = (t.numpy() for t in model.masked_batch(ids, training=False))
        self.assertGreater(selected.sum(), 0)
        h = model.encoder(masked).numpy().astype("float64")
        w = lambda v: v.numpy().astype("float64")  # noqa: E731
        h = _gelu(h @ w(model.transform.kernel) + w(model.transform.bias))
        h = _layer_norm(h, w(model.transform_norm.gamma), w(model.transform_norm.beta))
        logits = h @ w(model.encoder.token_embedding.embeddings).T + w(model.output_bias)  # tied weights
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        nll = -np.take_along_axis(log_probs, ids[..., None], -1)[..., 0]
        self.assertAllClose(result["loss"], (nll * selected).sum() / selected.sum(), atol=1e-4)
        correct = (logits.argmax(-1) == ids).astype("float64")
        self.assertAllClose(result["masked_accuracy"], (correct * selected).sum() / selected.sum(), atol=1e-6)

    @pytest.mark.compiled
    def test_fit_learns_the_cloze_task_and_masks_follow_the_step(self):
        model = self.build(mask_rate=0.3)
        ids = _corpus()
        first = model.masked_batch(ids[:4])[1].numpy()
        history = model.fit(ids, batch_size=32, epochs=12, verbose=0).history
        self.assertLess(history["loss"][-1], 0.5 * history["loss"][0])
        self.assertGreater(history["masked_accuracy"][-1], 0.6)  # chance: 1/16
        self.assertFalse(np.array_equal(first, model.masked_batch(ids[:4])[1].numpy()))  # a new step, new masks
        self.assertIsNone(model.output_dense)  # tied: the embedding is the output projection
        untied = MaskedLanguageModel(_encoder(), VOCABULARY, tie_weights=False, seed=3)
        self.assertEqual(untied.output_dense.kernel.shape, (16, VOCABULARY))

    def test_serialization_and_export(self):
        ids = _corpus(8)
        model = self.build()
        model.fit(ids, batch_size=4, epochs=1, verbose=0)
        self.run_serialization_test(model, ids)
        self.run_fit_then_export_test(self.build, ids, ids)

    def test_bad_arguments(self):
        self.assertRaisesValueError(["`encoder`", "pooling=None"], MaskedLanguageModel, _encoder("mean"), VOCABULARY)
        self.assertRaisesValueError(["`mask_rate`", "0"], MaskedLanguageModel, _encoder(), VOCABULARY, mask_rate=0)
        self.assertRaisesValueError(
            ["`mask_token_id`", "16"], MaskedLanguageModel, _encoder(), VOCABULARY, mask_token_id=16
        )
        dense_encoder = keras.Sequential([keras.Input((8,)), keras.layers.Embedding(VOCABULARY, 4)])
        self.assertRaisesValueError(["`tie_weights`"], MaskedLanguageModel, dense_encoder, VOCABULARY)
        MaskedLanguageModel(dense_encoder, VOCABULARY, tie_weights=False)  # any token-level model, untied
        self.assertRaisesValueError(["`encoder`", "Dense"], MaskedLanguageModel, keras.layers.Dense(3), VOCABULARY)
        model = self.build()
        self.assertRaisesValueError(["`x`", "token ids", "16"], model.fit, _corpus(4) + VOCABULARY, verbose=0)
        self.assertRaisesValueError(["`mask_rate`", "1.5"], MaskedLanguageModel, _encoder(), VOCABULARY, mask_rate=1.5)
        padded = _corpus(4)
        padded[2] = 0  # nothing to mask in row 2
        self.assertRaisesValueError(["maskable token", "row 2"], model.fit, padded, verbose=0)
        self.assertRaisesValueError(["integer token ids", "<U", "word_tokenizer"], model.fit, np.array(["a b"] * 4))
        self.assertRaisesValueError(["integer token ids", "astype"], model.fit, _corpus(4) + 0.5, verbose=0)
        self.assertRaisesValueError(["(batch, length)", "(0, 8)"], model.fit, _corpus(4)[:0], verbose=0)
        self.assertRaisesValueError(["(batch, length)", "(8,)"], model.fit, _corpus(4)[0], verbose=0)
        model.fit(_corpus(4).astype("float32"), verbose=0)  # whole-number float ids are ids
        self.assertRaisesValueError(
            ["`mask_token_id`", "mask_token_id=0", "padding"], MaskedLanguageModel, _encoder(), VOCABULARY,
            mask_token_id=0,
        )  # fmt: skip

    def test_partial_last_batch(self):
        model = self.build()
        history = model.fit(_corpus(10), batch_size=4, epochs=1, verbose=0).history  # batches of 4, 4, 2
        self.assertTrue(np.isfinite(history["loss"][0]))
