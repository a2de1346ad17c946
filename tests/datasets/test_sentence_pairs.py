import numpy as np

from keras_transfer.datasets import sentence_pairs
from keras_transfer.layers import word_tokenizer
from tests.test_case import TestCase

CLS, SEP = 2, 3


def _documents(n=12, seed=0):
    """Documents whose sentences are distinct id lists: each sentence's place is recoverable from its ids."""
    rng = np.random.default_rng(seed)
    documents, next_id = [], 4
    for _ in range(n):
        document = []
        for _ in range(rng.integers(2, 6)):
            length = int(rng.integers(1, 4))
            document.append(list(range(next_id, next_id + length)))
            next_id += length
        documents.append(document)
    return documents


def _split(tokens, segments):
    """(A, B) read back from one row: `[CLS] A [SEP] B [SEP]` and its segment ids."""
    real = tokens[tokens != 0]
    first_sep = int(np.flatnonzero(real == SEP)[0])
    assert real[0] == CLS and real[-1] == SEP
    a, b = real[1:first_sep].tolist(), real[first_sep + 1 : -1].tolist()
    expected_segments = [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (len(tokens) - len(real))
    assert segments.tolist() == expected_segments, (tokens, segments)
    return a, b


class SentencePairsTest(TestCase):
    def test_pairs_follow_the_documents(self):
        documents = _documents()
        where = {tuple(s): (d, i) for d, doc in enumerate(documents) for i, s in enumerate(doc)}
        inputs, is_next = sentence_pairs(documents, sequence_length=10, seed=1)
        self.assertEqual(inputs["token_ids"].dtype, np.int32)
        self.assertEqual(inputs["segment_ids"].shape, inputs["token_ids"].shape)
        self.assertEqual(len(is_next), sum(len(d) - 1 for d in documents))  # one pair per sentence with a successor
        firsts = []
        for tokens, segments, label in zip(inputs["token_ids"], inputs["segment_ids"], is_next):
            a, b = _split(tokens, segments)
            (da, ia), (db, ib) = where[tuple(a)], where[tuple(b)]
            firsts.append((da, ia))
            if label == 1:
                self.assertEqual((db, ib), (da, ia + 1))
            else:
                self.assertNotEqual(db, da)  # a random sentence of another document
        self.assertEqual(firsts, [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)])

    def test_next_rate_and_seed(self):
        documents = _documents(1000)
        _, is_next = sentence_pairs(documents, 10, seed=0)
        self.assertAlmostEqual(is_next.mean(), 0.5, delta=0.03)  # 2471 pairs: 3 standard errors
        _, mostly = sentence_pairs(documents, 10, seed=0, next_rate=0.9)
        self.assertAlmostEqual(mostly.mean(), 0.9, delta=0.02)
        again, labels = sentence_pairs(documents, 10, seed=0)
        first, labels_first = sentence_pairs(documents, 10, seed=0)
        np.testing.assert_array_equal(again["token_ids"], first["token_ids"])
        np.testing.assert_array_equal(labels, labels_first)
        _, other = sentence_pairs(documents, 10, seed=1)
        self.assertFalse(np.array_equal(other, labels))
        self.assertTrue(np.all(sentence_pairs(documents, 10, next_rate=1.0)[1] == 1))

    def test_truncation_drops_from_the_longer_sentence_end(self):
        documents = [[[10, 11, 12, 13, 14, 15], [20, 21]], [[30], [31]]]
        inputs, _ = sentence_pairs(documents, sequence_length=8, next_rate=1.0, cls_id=7, sep_id=8)
        # 5 tokens fit: A loses its tail until it is no longer than B, then they alternate.
        self.assertEqual(inputs["token_ids"][0].tolist(), [7, 10, 11, 12, 8, 20, 21, 8])
        self.assertEqual(inputs["token_ids"][1].tolist(), [7, 30, 8, 31, 8, 0, 0, 0])
        self.assertEqual(inputs["segment_ids"][1].tolist(), [0, 0, 0, 1, 1, 0, 0, 0])
        short, _ = sentence_pairs(documents, sequence_length=5, next_rate=1.0, cls_id=7, sep_id=8)
        self.assertEqual(short["token_ids"][0].tolist(), [7, 10, 8, 20, 8])

    def test_texts_with_a_word_tokenizer(self):
        tokenizer = word_tokenizer(
            vocabulary=["[cls]", "[sep]", "the", "cat", "sat", "a", "dog", "ran"], sequence_length=6
        )
        documents = [["The cat sat.", "A dog ran!"], ["the dog", "a cat"]]
        inputs, is_next = sentence_pairs(documents, 9, word_tokenizer=tokenizer, next_rate=1.0)
        self.assertEqual(inputs["token_ids"].tolist(), [[2, 4, 5, 6, 3, 7, 8, 9, 3], [2, 4, 8, 3, 7, 5, 3, 0, 0]])
        self.assertEqual(is_next.tolist(), [1, 1])

    def test_errors(self):
        documents = _documents(3)
        self.assertRaisesValueError(["at least 2 documents", "1 document"], sentence_pairs, documents[:1], 8)
        self.assertRaisesValueError(
            ["at least 2 sentences", "document 1 with 1 sentence"], sentence_pairs, [documents[0], [[5, 6]]], 8
        )
        self.assertRaisesValueError(["list of documents", "str"], sentence_pairs, ["one text", "another"], 8)
        self.assertRaisesValueError(["sentence 0", "cls_id=2"], sentence_pairs, [[[2, 5], [6]], [[7], [8]]], 8)
        self.assertRaisesValueError(["token id > 0", "[]"], sentence_pairs, [[[], [6]], [[7], [8]]], 8)
        self.assertRaisesValueError(["`sequence_length` must be at least 5", "4"], sentence_pairs, documents, 4)
        self.assertRaisesValueError(["`next_rate`", "1.5"], sentence_pairs, documents, 8, next_rate=1.5)
        self.assertRaisesValueError(["pass word_tokenizer=", "'a b'"], sentence_pairs, [["a b", "c"], ["d", "e"]], 8)
        for bad in ([5.5, 6], [float("nan"), 6]):
            self.assertRaisesValueError(
                ["integer token ids", "document 0"], sentence_pairs, [[bad, [7]], [[7], [8]]], 8
            )
        tokenizer = word_tokenizer(vocabulary=["[cls]", "[sep]", "cat"], sequence_length=4)
        self.assertRaisesValueError(
            ["document 0, sentence 1"], sentence_pairs, [["cat", "!!"], ["cat", "cat"]], 8, word_tokenizer=tokenizer
        )
