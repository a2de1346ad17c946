import unittest
import warnings

import keras
import numpy as np

from keras_transfer.datasets import sentence_pairs
from keras_transfer.models import MaskedLanguageModel
from tests.test_case import TestCase

try:
    import keras_hub
except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
    keras_hub = None

VOCABULARY = 24
LENGTH = 8


def tiny_bert():
    """A randomly initialised one-layer BERT: nothing is downloaded."""
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=LENGTH,
    )


def _pairs(seed=0):
    rng = np.random.default_rng(seed)
    documents = [[list(rng.integers(4, VOCABULARY, rng.integers(1, 4))) for _ in range(4)] for _ in range(6)]
    return sentence_pairs(documents, LENGTH, seed=seed)


def _build(next_sentence=False):
    model = MaskedLanguageModel(
        tiny_bert(),
        VOCABULARY,
        next_sentence=next_sentence,
        unmaskable_ids=(2, 3),
        first_random_id=4,
        mask_rate=0.3,
        seed=2,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def _layer_norm(x, gamma, beta, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


@unittest.skipIf(keras_hub is None, "keras-hub is not installed (optional extra `hub`)")
class MaskedLanguageModelKerasHubTest(TestCase):
    def test_loss_matches_numpy_with_tied_keras_hub_embedding(self):
        model = _build(next_sentence=True)
        self.assertIs(model.encoder.token_embedding, model.encoder.get_layer("token_embedding"))
        self.assertIsNone(model.pooler)  # BERT's own pooled_output is the pooler
        inputs, is_next = _pairs()
        result = model.evaluate(inputs, is_next, batch_size=len(is_next), verbose=0, return_dict=True)
        masked, selected = (t.numpy() for t in model.masked_batch(inputs["token_ids"], training=False))
        self.assertGreater(selected.sum(), 0)
        outputs = model.encoder(
            {
                "token_ids": masked,
                "segment_ids": inputs["segment_ids"],
                "padding_mask": (inputs["token_ids"] != 0).astype("int32"),
            }
        )
        w = lambda v: np.asarray(v.numpy(), "float64")  # noqa: E731
        h = _gelu(w(outputs["sequence_output"]) @ w(model.transform.kernel) + w(model.transform.bias))
        h = _layer_norm(h, w(model.transform_norm.gamma), w(model.transform_norm.beta))
        log_probs = _log_softmax(h @ w(model.encoder.token_embedding.embeddings).T + w(model.output_bias))
        nll = -np.take_along_axis(log_probs, inputs["token_ids"][..., None].astype("int64"), -1)[..., 0]
        cloze = (nll * selected).sum() / selected.sum()
        head = model.next_sentence_dense
        pair_logits = w(outputs["pooled_output"]) @ w(head.kernel) + w(head.bias)
        pair = -_log_softmax(pair_logits)[np.arange(len(is_next)), is_next].mean()
        self.assertAllClose(result["masked_loss"], cloze, atol=1e-4)
        self.assertAllClose(result["next_sentence_loss"], pair, atol=1e-5)
        self.assertAllClose(result["loss"], cloze + pair, atol=1e-4)

    def test_fit_two_steps_round_trip_and_export(self):
        inputs, is_next = _pairs()
        model = _build()
        pooler = model.encoder.get_layer("pooled_dense")
        # Cloze only: BERT's pooler gets no gradient; every other weight (the tied embedding included) moves.
        self.run_fit_test(model, inputs, batch_size=8, steps=2, unchanged_ok=pooler.trainable_weights)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(inputs, batch_size=8, epochs=1, verbose=0)
        self.assertFalse([w for w in caught if "Gradients do not exist" in str(w.message)])
        self.run_serialization_test(model, inputs)
        served = {k: v[:5] for k, v in inputs.items()}
        self.run_fit_then_export_test(_build, inputs, served, batch_size=8)
        nsp = _build(next_sentence=True)
        self.run_fit_test(nsp, inputs, is_next, batch_size=8, steps=2)
        reloaded = self.run_serialization_test(nsp, inputs)
        self.assertAllClose(reloaded.next_sentence_logits(inputs), nsp.next_sentence_logits(inputs), atol=1e-6)
        self.run_fit_then_export_test(lambda: _build(next_sentence=True), inputs, served, fit_y=is_next, batch_size=8)

    def test_plain_token_ids_mean_segment_zero(self):
        model = _build()
        ids = _pairs()[0]["token_ids"][:4]
        zeros = {"token_ids": ids, "segment_ids": np.zeros_like(ids)}
        self.assertAllClose(model.predict(ids, verbose=0), model.predict(zeros, verbose=0), atol=1e-6)

    def test_bad_arguments(self):
        self.assertRaisesValueError(
            ["`tie_weights`", "(30, 8)", "(24, 8)"], MaskedLanguageModel, tiny_bert(), 30, first_random_id=4
        )
        model = _build()
        inputs, _ = _pairs()
        bad = dict(inputs, segment_ids=inputs["segment_ids"] + 2)
        self.assertRaisesValueError(["`segment_ids`", "num_segments=2"], model.fit, bad, verbose=0)
