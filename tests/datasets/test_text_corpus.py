import re
import string
import sys

import numpy as np

from keras_transfer.datasets import TOPIC_GROUPS
from keras_transfer.datasets import load_python_docs
from keras_transfer.datasets import python_docs_tokenizer
from keras_transfer.datasets import split_sentences
from tests.test_case import TestCase

TEXT = """The "pass" statement
********************

The pass statement does nothing at all.  It is used, e.g. when a
statement is required syntactically. Nothing happens here at all (really)!

   pass_stmt ::= "pass"

   def f(arg): pass    # a function that does nothing (yet)

* A bullet item that is long enough to keep.

+--------+---------+
| Table  | Cell    |
+--------+---------+

Short one.  A sentence that is 123 456 789 000 111 222 333 444 mostly digits.
"""


class SplitSentencesTest(TestCase):
    def test_prose_only(self):
        self.assertEqual(
            split_sentences(TEXT),
            [
                "The pass statement does nothing at all.",
                "It is used, e.g. when a statement is required syntactically.",
                "Nothing happens here at all (really)!",
                "A bullet item that is long enough to keep.",
            ],
        )

    def test_word_bounds(self):
        self.assertIn("Short one.", split_sentences(TEXT, min_words=2))
        kept = split_sentences(TEXT, min_words=1, max_words=6)
        self.assertEqual(kept, ["Nothing happens here at all (really)!", "Short one."])

    def test_errors(self):
        self.assertRaisesValueError(["`text` must be a string", "int"], split_sentences, 3)
        self.assertRaisesValueError("`min_words`", split_sentences, TEXT, min_words=0)
        self.assertRaisesValueError("`max_words`", split_sentences, TEXT, min_words=5, max_words=4)


class LoadPythonDocsTest(TestCase):
    def test_topic_groups(self):
        from pydoc_data.topics import topics

        grouped = [name for names in TOPIC_GROUPS.values() for name in names]
        self.assertEqual(len(grouped), len(set(grouped)))
        self.assertEqual(len(TOPIC_GROUPS), 5)
        # Every topic of this Python's manual is in a group, except the debugger (pre-training only).
        self.assertLessEqual(set(topics) - set(grouped), {"debugger"})

    def test_sizes_and_labels(self):
        x_pre, (x_train, y_train), (x_test, y_test) = load_python_docs(sequence_length=24)
        self.assertEqual(x_pre.shape[1:], (24,))
        self.assertEqual((x_train.shape[1], x_test.shape[1]), (24, 24))
        self.assertEqual((len(x_train), len(x_test)), (len(y_train), len(y_test)))
        self.assertEqual((y_train.dtype, y_test.dtype, x_train.dtype), (np.int64, np.int64, np.int64))
        for y in (y_train, y_test):
            self.assertEqual(set(np.unique(y).tolist()), set(range(5)))
        # Each topic holds out a quarter of its sentences.
        self.assertAllClose(len(x_test) / (len(x_train) + len(x_test)), 0.25, atol=0.01)
        self.assertGreater(len(x_pre), len(x_train))
        self.assertLess(int(x_pre.max()), python_docs_tokenizer().vocabulary_size())
        self.assertGreaterEqual(int(x_test.min()), 0)
        if sys.version_info[:2] == (3, 11):  # the sizes the docstring states
            self.assertEqual((len(x_pre), len(x_train), len(x_test)), (1842, 1665, 554))
            self.assertEqual(np.bincount(y_train).tolist(), [416, 232, 124, 507, 386])
            self.assertEqual(np.bincount(y_test).tolist(), [139, 77, 43, 168, 127])

    def test_deterministic_and_consistent(self):
        first = load_python_docs(as_text=True)
        second = load_python_docs(as_text=True)
        for a, b in zip((first[0], *first[1], *first[2]), (second[0], *second[1], *second[2])):
            np.testing.assert_array_equal(a, b)
        ids = load_python_docs(sequence_length=20, max_tokens=500)
        tokenizer = python_docs_tokenizer(sequence_length=20, max_tokens=500)
        self.assertEqual(tokenizer.vocabulary_size(), 500)
        np.testing.assert_array_equal(ids[2][0], tokenizer(list(first[2][0])).numpy())
        np.testing.assert_array_equal(ids[1][1], first[1][1])

    def test_no_overlap(self):
        pretrain, (train, _), (test, _) = load_python_docs(as_text=True)
        pretrain, train, test = (set(s.lower() for s in part) for part in (pretrain, train, test))
        self.assertEqual(pretrain & test, set())
        self.assertEqual(train & test, set())
        self.assertLessEqual(train, pretrain)
        self.assertEqual(len(test), len(load_python_docs(as_text=True)[2][0]))  # no duplicates

    def test_vocabulary_from_pretraining_only(self):
        pretrain, _, (test, _) = load_python_docs(as_text=True)
        tokenizer = python_docs_tokenizer(max_tokens=None)
        vocabulary = set(tokenizer.get_vocabulary())
        # TextVectorization's "lower_and_strip_punctuation", in plain Python.
        words = lambda texts: set(re.sub(r"[%s]" % re.escape(string.punctuation), "", " ".join(texts).lower()).split())  # noqa: E731
        test_only = words(test) - words(pretrain)
        self.assertTrue(test_only)
        self.assertEqual(vocabulary & test_only, set())

    def test_other_fraction(self):
        _, (x_train, _), (x_test, _) = load_python_docs(test_fraction=0.5, as_text=True)
        self.assertAllClose(len(x_test) / (len(x_train) + len(x_test)), 0.5, atol=0.02)

    def test_errors(self):
        for fraction in (0.0, 1.0, -0.1):
            self.assertRaisesValueError(["`test_fraction`", str(fraction)], load_python_docs, test_fraction=fraction)
        self.assertRaisesValueError("`sequence_length`", load_python_docs, sequence_length=0)
        self.assertRaisesValueError("`max_tokens`", load_python_docs, max_tokens=2)
