import keras
import numpy as np
import pytest

from keras_transfer.datasets import sentence_pairs
from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.models import MaskedLanguageModel
from tests.test_case import TestCase

VOCABULARY = 40
LENGTH = 10
TOPICS = 6  # document d uses the ids of band d % TOPICS only: a random second sentence is off-topic


def _gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def _layer_norm(x, gamma, beta, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _pairs(n_documents=TOPICS, sentences=16, seed=0):
    rng = np.random.default_rng(seed)
    documents = []
    for d in range(n_documents):
        band = 4 + 6 * (d % TOPICS)
        documents.append([list(rng.integers(band, band + 6, rng.integers(2, 4))) for _ in range(sentences)])
    return sentence_pairs(documents, LENGTH, seed=seed)


def _encoder(dtype=None):
    return TextTransformerEncoder(
        VOCABULARY, LENGTH, embedding_dim=16, num_layers=1, num_heads=2, pooling=None, num_segments=2, dtype=dtype
    )


def _build(**kwargs):
    model = MaskedLanguageModel(
        _encoder(), VOCABULARY, next_sentence=True, unmaskable_ids=(2, 3), first_random_id=4, seed=5, **kwargs
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def numpy_losses(model, inputs, is_next, masked, selected):
    """BERT's pre-training loss in NumPy from the encoder's features of the masked pairs."""
    w = lambda v: np.asarray(v.numpy(), "float64")  # noqa: E731
    sequence = model.encoder({"token_ids": masked, "segment_ids": inputs["segment_ids"]}).numpy().astype("float64")
    h = _gelu(sequence @ w(model.transform.kernel) + w(model.transform.bias))
    h = _layer_norm(h, w(model.transform_norm.gamma), w(model.transform_norm.beta))
    log_probs = _log_softmax(h @ w(model.encoder.token_embedding.embeddings).T + w(model.output_bias))
    nll = -np.take_along_axis(log_probs, inputs["token_ids"][..., None].astype("int64"), -1)[..., 0]
    cloze = (nll * selected).sum() / selected.sum()
    pooled = np.tanh(sequence[:, 0] @ w(model.pooler.kernel) + w(model.pooler.bias))  # first ([CLS]) position
    pair_logits = pooled @ w(model.next_sentence_dense.kernel) + w(model.next_sentence_dense.bias)
    pair_nll = -_log_softmax(pair_logits)[np.arange(len(is_next)), is_next]
    accuracy = (pair_logits.argmax(-1) == is_next).mean()
    return cloze, pair_nll.mean(), accuracy


class NextSentencePredictionTest(TestCase):
    def test_loss_matches_numpy_on_fixed_masks_and_labels(self):
        model = _build()
        inputs, is_next = _pairs()
        inputs = {k: v[:12] for k, v in inputs.items()}
        is_next = is_next[:12]
        result = model.evaluate(inputs, is_next, batch_size=12, verbose=0, return_dict=True)
        self.assertEqual(
            sorted(result), ["loss", "masked_accuracy", "masked_loss", "next_sentence_accuracy", "next_sentence_loss"]
        )
        masked, selected = (t.numpy() for t in model.masked_batch(inputs["token_ids"], training=False))
        self.assertGreater(selected.sum(), 0)
        special = np.isin(inputs["token_ids"], [0, 2, 3])
        self.assertEqual(selected[special].sum(), 0)  # [CLS], [SEP] and padding are never masked
        cloze, pair, accuracy = numpy_losses(model, inputs, is_next, masked, selected)
        self.assertAllClose(result["masked_loss"], cloze, atol=1e-4)
        self.assertAllClose(result["next_sentence_loss"], pair, atol=1e-5)
        self.assertAllClose(result["loss"], cloze + pair, atol=1e-4)
        self.assertAllClose(result["next_sentence_accuracy"], accuracy, atol=1e-6)
        logits = model.next_sentence_logits(inputs).numpy()
        self.assertEqual(logits.shape, (12, 2))

    def test_gradients_match_finite_differences(self):
        keras.config.set_dtype_policy("float64")
        model = MaskedLanguageModel(
            _encoder("float64"), VOCABULARY, next_sentence=True, unmaskable_ids=(2, 3), first_random_id=4, seed=5
        )
        inputs, is_next = _pairs()
        data = ({k: v[:4] for k, v in inputs.items()}, is_next[:4])
        variables = [
            model.next_sentence_dense.kernel,
            model.pooler.bias,
            model.encoder.segment_embedding.embeddings,
            model.output_bias,
        ]

        def fn(*values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return model._loss(data, training=False)[0]

        self.run_gradient_check(fn, [v.numpy() for v in variables], eps=1e-5, atol=1e-7, rtol=1e-4)

    @pytest.mark.compiled
    def test_fit_learns_both_tasks(self):
        model = _build()
        # 24 x 39 pairs: with about one masked token per pair, fewer pairs leave the cloze loss on a plateau
        # near log(40) for many epochs (seen on Keras 3.13.2 and 3.15.1 alike).
        inputs, is_next = _pairs(n_documents=24, sentences=40)
        history = model.fit(inputs, is_next, batch_size=32, epochs=12, verbose=0).history
        # Seen over 3 seeds each on Keras 3.13.2 and 3.15.1: accuracy 0.75-0.89 (chance 0.5, majority class
        # 0.57); final cloze loss 0.56-0.63 of the first epoch's (log 6 = 1.79 is the floor, log 40 = 3.69).
        self.assertGreater(history["next_sentence_accuracy"][-1], 0.68)
        self.assertLess(history["masked_loss"][-1], 0.8 * history["masked_loss"][0])
        self.assertAllClose(
            np.asarray(history["loss"]),
            np.asarray(history["masked_loss"]) + np.asarray(history["next_sentence_loss"]),
            atol=1e-5,
        )

    def test_seeded_runs_are_identical(self):
        inputs, is_next = _pairs()
        runs = []
        for _ in range(2):
            keras.utils.set_random_seed(11)
            model = _build()
            history = model.fit(inputs, is_next, batch_size=16, epochs=2, verbose=0, shuffle=False).history
            runs.append((history, [v.numpy() for v in model.weights]))
        self.assertEqual(runs[0][0], runs[1][0])
        for a, b in zip(runs[0][1], runs[1][1]):
            np.testing.assert_array_equal(a, b)

    def test_serialization_and_export(self):
        inputs, is_next = _pairs()
        model = _build()
        model.fit(inputs, is_next, batch_size=16, epochs=1, verbose=0)
        reloaded = self.run_serialization_test(model, inputs)
        self.assertAllClose(reloaded.next_sentence_logits(inputs), model.next_sentence_logits(inputs), atol=1e-6)
        self.assertEqual(reloaded.unmaskable_ids, (0, 2, 3))
        served = {k: v[:5] for k, v in inputs.items()}
        self.run_fit_then_export_test(_build, inputs, served, fit_y=is_next, batch_size=8)

    def test_bad_inputs(self):
        inputs, is_next = _pairs()
        model = _build()
        self.assertRaisesValueError(["`y`", "is-next", "y=None"], model.fit, inputs, verbose=0)
        self.assertRaisesValueError(["`y`", "[0, 2)"], model.fit, inputs, is_next + 1, verbose=0)
        bad = dict(inputs, segment_ids=inputs["segment_ids"] * 2)
        self.assertRaisesValueError(["`segment_ids`", "[0, num_segments=2)", "0 to 2"], model.fit, bad, is_next)
        bad = dict(inputs, token_ids=inputs["token_ids"] + VOCABULARY)
        self.assertRaisesValueError(["token ids in [0, vocabulary_size=40)"], model.fit, bad, is_next)
        empty = {k: v.copy() for k, v in inputs.items()}
        empty["token_ids"][3] = [2, 3, 3] + [0] * (LENGTH - 3)
        self.assertRaisesValueError(["maskable token", "row 3"], model.evaluate, empty, is_next)
        self.assertRaisesValueError(["keys", "'images'"], model.fit, dict(inputs, images=inputs["token_ids"]), is_next)
        plain = TextTransformerEncoder(VOCABULARY, LENGTH, embedding_dim=8, num_heads=2, pooling=None)
        self.assertRaisesValueError(
            ["`next_sentence`", "num_segments=None", "num_segments=2"],
            MaskedLanguageModel,
            plain,
            VOCABULARY,
            next_sentence=True,
        )
        cloze_only = MaskedLanguageModel(plain, VOCABULARY)
        self.assertRaisesValueError(
            ["`next_sentence_logits`", "next_sentence=True"], cloze_only.next_sentence_logits, inputs
        )
        self.assertRaisesValueError(["segment_ids", "num_segments=2"], cloze_only.fit, inputs, verbose=0)
        self.assertRaisesValueError(
            ["`unmaskable_ids`", "40"], MaskedLanguageModel, _encoder(), VOCABULARY, unmaskable_ids=(2, 40)
        )
