"""Sentence pairs for BERT's next-sentence prediction, as NumPy arrays.

Every sentence that has a successor in its document becomes sentence A of one
pair; sentence B is the real next sentence (label 1) with probability
`next_rate`, otherwise a random sentence of another document (label 0). A pair is
written `[CLS] A [SEP] B [SEP]`, segment 0 up to the first `[SEP]` and 1 after it,
then padded. Plain Python and NumPy: tokenizing (if asked) is the one TensorFlow call.
"""

import numpy as np

from keras_transfer.utils import validation


def _as_ids(documents, word_tokenizer):
    """Documents as lists of int-id lists (strings go through `word_tokenizer`, padding dropped)."""
    ids = []
    for d, document in enumerate(documents):
        if isinstance(document, str) or not hasattr(document, "__len__"):
            raise ValueError(
                "`documents` must be a list of documents, each a list of sentences. "
                f"Received: document {d} of type {type(document).__name__}. Split every document into sentences."
            )
        if word_tokenizer is not None:
            rows = np.asarray(word_tokenizer([str(s) for s in document])) if len(document) else []
            ids.append([[int(i) for i in row if i != 0] for row in rows])
        else:
            ids.append([_sentence_ids(s, d) for s in document])
    return ids


def _sentence_ids(sentence, d):
    """One sentence's token ids as ints; a ValueError for text or fractional ids."""
    if isinstance(sentence, str):
        raise ValueError(
            f"`documents` hold strings (document {d}: {sentence[:40]!r}): pass word_tokenizer=... to tokenize them, "
            "or token ids. Received: word_tokenizer=None."
        )
    values = np.asarray(sentence).reshape(-1)
    if values.dtype.kind in "USO" or (
        values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values)))
    ):
        raise ValueError(
            f"Every sentence must hold integer token ids. Received: document {d}, sentence {values.tolist()[:8]}. "
            "Tokenize text with word_tokenizer=..., or cast whole-number ids to int."
        )
    return [int(i) for i in values]


def _check(documents, sequence_length, cls_id, sep_id):
    if len(documents) < 2:
        raise ValueError(
            "`documents` must hold at least 2 documents (random second sentences come from another "
            f"document). Received: {len(documents)} document(s)."
        )
    for d, document in enumerate(documents):
        if len(document) < 2:
            raise ValueError(
                "Every document must hold at least 2 sentences (a sentence and its successor). "
                f"Received: document {d} with {len(document)} sentence(s). Merge or drop it."
            )
        for s, sentence in enumerate(document):
            bad = [i for i in sentence if i <= 0 or i in (cls_id, sep_id)]
            if not sentence or bad:
                raise ValueError(
                    f"Every sentence must hold at least one token id > 0 other than cls_id={cls_id} and "
                    f"sep_id={sep_id} (0 is padding). Received: document {d}, sentence {s} = {sentence}."
                )
    if sequence_length < 5:
        raise ValueError(
            "`sequence_length` must be at least 5 ([CLS] A [SEP] B [SEP] with one token each). "
            f"Received: sequence_length={sequence_length}"
        )


def _truncate(first, second, budget):
    """Drops tokens from the end of the longer sentence until both fit (BERT's truncate_seq_pair, end side)."""
    first, second = list(first), list(second)
    while len(first) + len(second) > budget:
        (first if len(first) > len(second) else second).pop()
    return first, second


def sentence_pairs(
    documents,
    sequence_length,
    seed=0,
    word_tokenizer=None,
    next_rate=0.5,
    cls_id=2,
    sep_id=3,
):
    """`[CLS] A [SEP] B [SEP]` pairs with next-sentence labels, as BERT pre-trains on.

    One pair per sentence that has a successor in its document: B is the real next
    sentence (`is_next = 1`) with probability `next_rate`, otherwise a uniformly
    drawn sentence of another, uniformly drawn document (`is_next = 0`). Pairs
    longer than `sequence_length` lose tokens from the end of the longer sentence
    (BERT's `truncate_seq_pair`), then are padded with 0. Segment ids are 0 for
    `[CLS] A [SEP]` (and the padding), 1 for `B [SEP]`. Pairs come in document
    order (`fit` shuffles them); the draws depend only on `seed`.

    The default special ids follow `keras_transfer.layers.word_tokenizer`'s layout:
    0 padding, 1 out-of-vocabulary (the default `mask_token_id` of
    `MaskedLanguageModel`), so reserve ids 2 and 3 by starting the vocabulary with
    two placeholder entries, e.g. `word_tokenizer(vocabulary=["[cls]", "[sep]", *words])`
    (the tokenizer strips brackets from text, so the placeholders never occur in
    it). With a BERT WordPiece vocabulary pass `cls_id=101, sep_id=102`.

    Args:
        documents: a list of at least 2 documents, each a list of at least 2
            sentences in reading order; a sentence is a list of int token ids
            (> 0), or a string when `word_tokenizer` is given.
        sequence_length: tokens per pair, at least 5.
        seed: int seed of the next / random draws.
        word_tokenizer: None (sentences are id lists), or a callable mapping a
            list of strings to padded ids (0 = padding), such as
            `keras_transfer.layers.word_tokenizer(...)`; give it an
            `sequence_length` at least the longest sentence's length.
        next_rate: probability that B is the real next sentence, in [0, 1].
        cls_id: the `[CLS]` id opening every pair.
        sep_id: the `[SEP]` id closing each sentence.

    Returns:
        `(inputs, is_next)`: `inputs` a dict of int32 arrays `token_ids` and
        `segment_ids` of shape `(num_pairs, sequence_length)`, `is_next` an int32
        array `(num_pairs,)` of 0 / 1: the `(x, y)` of
        `MaskedLanguageModel(..., next_sentence=True).fit`.

    Raises:
        ValueError: if there are fewer than 2 documents, a document has fewer than
            2 sentences, a sentence holds no token id > 0 (or holds `cls_id` /
            `sep_id`), `sequence_length` is below 5 or `next_rate` lies outside [0, 1].

    Reference:
        Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding", NAACL 2019 (§3.1, Task #2;
        appendix A.2).

    Example:

    >>> documents = [[[5, 6], [7], [8, 9]], [[10, 11, 12], [13]]]
    >>> inputs, is_next = keras_transfer.datasets.sentence_pairs(documents, sequence_length=8, seed=0)
    >>> inputs["token_ids"].shape, is_next.tolist()
    ((3, 8), [0, 1, 1])
    >>> inputs["token_ids"][1].tolist()  # [CLS] [7] [SEP] [8, 9] [SEP]: the real next sentence
    [2, 7, 3, 8, 9, 3, 0, 0]
    >>> inputs["segment_ids"][1].tolist()
    [0, 0, 0, 1, 1, 1, 0, 0]
    """
    sequence_length = validation.check_positive_int("sequence_length", sequence_length)
    next_rate = validation.check_fraction("next_rate", next_rate, inclusive_high=True)
    cls_id, sep_id = validation.check_positive_int("cls_id", cls_id), validation.check_positive_int("sep_id", sep_id)
    ids = _as_ids(documents, word_tokenizer)
    _check(ids, sequence_length, cls_id, sep_id)
    rng = np.random.default_rng(seed)
    tokens, segments, labels = [], [], []
    for d, document in enumerate(ids):
        for s in range(len(document) - 1):
            is_next = bool(rng.random() < next_rate)
            if is_next:
                second = document[s + 1]
            else:
                other = ids[(d + 1 + rng.integers(len(ids) - 1)) % len(ids)]  # any document but d
                second = other[rng.integers(len(other))]
            first, second = _truncate(document[s], second, sequence_length - 3)
            row = [cls_id, *first, sep_id, *second, sep_id]
            pad = sequence_length - len(row)
            tokens.append(row + [0] * pad)
            segments.append([0] * (len(first) + 2) + [1] * (len(second) + 1) + [0] * pad)
            labels.append(int(is_next))
    inputs = {"token_ids": np.asarray(tokens, "int32"), "segment_ids": np.asarray(segments, "int32")}
    return inputs, np.asarray(labels, "int32")
