import keras
import numpy as np

from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.layers import word_tokenizer
from keras_transfer.recipes import extend_vocabulary
from tests.test_case import TestCase

WORDS = ["the", "heart", "muscle", "disease", "of", "a", "patient"]


class ExtendVocabularyTest(TestCase):
    def setUp(self):
        super().setUp()
        self.tokenizer = word_tokenizer(vocabulary=WORDS, sequence_length=6)
        self.encoder = TextTransformerEncoder(len(WORDS) + 2, 6, embedding_dim=8, num_layers=1, num_heads=2)
        self.encoder.build((None, 6))
        self.table = self.encoder.token_embedding.embeddings.numpy().copy()

    def test_old_ids_rows_and_outputs_are_kept(self):
        tokenizer, encoder = extend_vocabulary(self.tokenizer, self.encoder, ["cardiomyopathy", "stent"])
        texts = ["the heart of a patient", "muscle disease"]
        np.testing.assert_array_equal(tokenizer(texts).numpy(), self.tokenizer(texts).numpy())
        self.assertEqual(tokenizer(["cardiomyopathy stent"]).numpy()[0, :2].tolist(), [9, 10])
        self.assertEqual(encoder.vocabulary_size, 11)
        table = encoder.token_embedding.embeddings.numpy()
        np.testing.assert_array_equal(table[:9], self.table)
        self.assertAllClose(table[9], self.table[1:].mean(axis=0))  # "mean": every row but padding
        self.assertAllClose(table[10], self.table[1:].mean(axis=0))
        ids = self.tokenizer(texts)
        self.assertAllClose(encoder(ids), self.encoder(ids), atol=1e-6)
        self.run_serialization_test(keras.Sequential([keras.Input((6,), dtype="int32"), encoder]), ids.numpy())

    def test_pieces_initialise_from_describing_words(self):
        _, encoder = extend_vocabulary(
            self.tokenizer,
            self.encoder,
            ["cardiomyopathy", "stent"],
            init="pieces",
            pieces={"cardiomyopathy": "Heart muscle disease!"},
        )
        table = encoder.token_embedding.embeddings.numpy()
        heart, muscle, disease = 3, 4, 5  # ids of the words (0 padding, 1 out-of-vocabulary)
        self.assertAllClose(table[9], self.table[[heart, muscle, disease]].mean(axis=0))
        self.assertAllClose(table[10], self.table[1:].mean(axis=0))  # not in `pieces`: the mean

    def test_bad_arguments(self):
        tok, enc = self.tokenizer, self.encoder
        self.assertRaisesValueError(["`new_tokens`", "[]"], extend_vocabulary, tok, enc, [])
        self.assertRaisesValueError(["`new_tokens`", "repeated", "stent"], extend_vocabulary, tok, enc, ["stent"] * 2)
        self.assertRaisesValueError(["`new_tokens`", "already", "heart"], extend_vocabulary, tok, enc, ["heart"])
        self.assertRaisesValueError(["`new_tokens`", "empty"], extend_vocabulary, tok, enc, [""])
        self.assertRaisesValueError(["`new_tokens`", "Stent"], extend_vocabulary, tok, enc, ["Stent"])
        for unreachable in ("covid-19", "a\tb", "[mask]"):  # punctuation is stripped, tabs split
            self.assertRaisesValueError(
                ["`new_tokens` must be words the tokenizer can produce", repr(unreachable)], extend_vocabulary, tok,
                enc, ["stent", unreachable],
            )  # fmt: skip
        self.assertRaisesValueError(["`init`", "'zeros'"], extend_vocabulary, tok, enc, ["stent"], init="zeros")
        self.assertRaisesValueError(
            ["`pieces`", "stent"], extend_vocabulary, tok, enc, ["stent"], init="pieces", pieces={"stent": "xyz"}
        )
        other = TextTransformerEncoder(20, 6, embedding_dim=8, num_layers=1, num_heads=2)
        self.assertRaisesValueError(["`encoder`", "20", "9"], extend_vocabulary, tok, other, ["stent"])
        self.assertRaisesValueError(["`encoder`", "Dense"], extend_vocabulary, tok, keras.layers.Dense(2), ["stent"])
