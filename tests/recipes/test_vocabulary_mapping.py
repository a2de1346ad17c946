import keras
import numpy as np

from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.layers import word_tokenizer
from keras_transfer.recipes import map_vocabulary
from keras_transfer.recipes import vocabulary_mapping
from tests.test_case import TestCase

TARGET = ["", "[UNK]", "heart", "beat", "heartbeat", "zzz", "ok"]
SOURCE = ["", "[UNK]", "beat", "heart", "ok"]


def embedding(rows):
    layer = keras.layers.Embedding(len(rows), rows.shape[1])
    layer.build((None,))
    layer.set_weights([rows])
    return layer


class VocabularyMappingTest(TestCase):
    def test_table_by_hand(self):
        table = vocabulary_mapping(TARGET, SOURCE)
        self.assertEqual(table.tolist(), [0, 1, 3, 2, 1, 1, 4])
        self.assertEqual(table.dtype, np.int32)
        bert_like = ["[PAD]", "[UNK]", "heart"]
        self.assertEqual(vocabulary_mapping(bert_like, SOURCE).tolist(), [0, 1, 3])  # padding onto padding

    def test_embedding_rows_by_hand(self):
        rows = np.arange(10, dtype="float32").reshape(5, 2)
        base = {0: rows[0], 1: rows[1], 2: rows[3], 3: rows[2], 6: rows[4]}
        for unmatched, heartbeat, zzz in (
            ("oov", rows[1], rows[1]),
            ("mean", rows[1:].mean(0), rows[1:].mean(0)),
            ("pieces", (rows[3] + rows[2]) / 2, rows[1]),
        ):
            mapped = map_vocabulary(TARGET, SOURCE, embedding(rows), unmatched=unmatched).embeddings.numpy()
            self.assertEqual(mapped.shape, (7, 2))
            for i, row in base.items():
                self.assertAllClose(mapped[i], row, atol=0)
            self.assertAllClose(mapped[4], heartbeat, atol=1e-6)
            self.assertAllClose(mapped[5], zzz, atol=1e-6)
        mapped = map_vocabulary(TARGET, SOURCE, embedding(rows), unmatched="pieces", pieces={"zzz": "ok heart"})
        self.assertAllClose(mapped.embeddings.numpy()[5], (rows[4] + rows[3]) / 2, atol=1e-6)
        wordpiece = ["[PAD]", "[UNK]", "heart", "##beat"]
        mapped = map_vocabulary(["", "[UNK]", "heartbeat"], wordpiece, embedding(rows[:4]), unmatched="pieces")
        self.assertAllClose(mapped.embeddings.numpy()[2], (rows[2] + rows[3]) / 2, atol=1e-6)

    def test_encoder_sees_what_the_source_tokenizer_gives(self):
        source = word_tokenizer(vocabulary=["a", "photo", "of", "cat"], sequence_length=6)
        target = word_tokenizer(vocabulary=["dog", "cat", "a", "photo"], sequence_length=6)
        encoder = TextTransformerEncoder(source.vocabulary_size(), 6, embedding_dim=8, num_layers=1, num_heads=2)
        texts = ["a photo a cat", "a dog photo", "cat bird"]  # words the target knows, or neither
        expected = encoder(source(texts))
        mapped = map_vocabulary(target, source, encoder)
        self.assertEqual(mapped.vocabulary_size, target.vocabulary_size())
        self.assertAllClose(mapped(target(texts)), expected, atol=1e-6)

    def test_errors(self):
        rows = np.zeros((5, 2), "float32")
        self.assertRaisesValueError(["`target`", "non-empty"], vocabulary_mapping, [], SOURCE)
        self.assertRaisesValueError(["`source`", "repeated", "'beat'"], vocabulary_mapping, TARGET, SOURCE + ["beat"])
        self.assertRaisesValueError(["`oov_token`", "'<unk>'"], vocabulary_mapping, TARGET, SOURCE, oov_token="<unk>")
        self.assertRaisesValueError(["`unmatched`"], map_vocabulary, TARGET, SOURCE, embedding(rows), unmatched="x")
        self.assertRaisesValueError(
            ["`pieces`"], map_vocabulary, TARGET, SOURCE, embedding(rows), unmatched="pieces", pieces={"nope": "ok"}
        )
        self.assertRaisesValueError(
            ["`pieces`", "zzz"],
            map_vocabulary,
            TARGET,
            SOURCE,
            embedding(rows),
            unmatched="pieces",
            pieces={"zzz": "q"},
        )
        self.assertRaisesValueError(
            ["`encoder`", "6 rows"], map_vocabulary, TARGET, SOURCE, embedding(np.zeros((6, 2)))
        )
        self.assertRaisesValueError(["`encoder`", "Dense"], map_vocabulary, TARGET, SOURCE, keras.layers.Dense(2))
