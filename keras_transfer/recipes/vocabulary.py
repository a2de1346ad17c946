"""Vocabulary extension: add target-domain words to a tokenizer and rows to a text encoder's embedding."""

import numpy as np

from keras_transfer.layers.text_transformer_encoder import TextTransformerEncoder
from keras_transfer.layers.word_tokenizer import word_tokenizer

INITIALIZERS = ("mean", "pieces")


def _check_new_tokens(new_tokens, vocabulary):
    if isinstance(new_tokens, str) or not isinstance(new_tokens, (list, tuple)) or not new_tokens:
        raise ValueError(
            f"`new_tokens` must be a non-empty list of words. Received: new_tokens={new_tokens!r}. "
            'Pass a list such as ["cardiomyopathy", "stent"].'
        )
    tokens = [str(t) for t in new_tokens]
    problems = {
        "empty or not lower-case single words": [t for t in tokens if not t or t != t.strip().lower() or " " in t],
        "repeated": sorted({t for t in tokens if tokens.count(t) > 1}),
        "already in the vocabulary": [t for t in tokens if t in vocabulary],
    }
    for what, bad in problems.items():
        if bad:
            raise ValueError(
                f"`new_tokens` must be new, distinct, lower-case words (the tokenizer lower-cases and splits "
                f"on whitespace). Received {what}: {bad}"
            )
    return tokens


def _check_reachable(tokenizer, tokens, first_id):
    """A ValueError for new tokens the tokenizer never emits (its standardisation changes or splits them)."""
    ids = np.asarray(tokenizer(tokens))
    unreachable = [t for i, t in enumerate(tokens) if ids[i, 0] != first_id + i or ids[i, 1:].any()]
    if unreachable:
        raise ValueError(
            "`new_tokens` must be words the tokenizer can produce: it lower-cases, strips punctuation and splits "
            f"on whitespace, so these would get embedding rows that no text reaches. Received: {unreachable}. "
            "Add the forms it produces (e.g. 'covid19' for 'covid-19')."
        )


def _piece_rows(tokens, pieces, tokenizer, table):
    """Per new token: the mean embedding of the known words of `pieces[token]`, or None."""
    rows = []
    for token in tokens:
        text = pieces.get(token)
        if text is None:
            rows.append(None)
            continue
        ids = [int(i) for i in np.asarray(tokenizer([text]))[0] if i > 1]  # 0 padding, 1 out-of-vocabulary
        if not ids:
            raise ValueError(
                f"`pieces` must describe each new token with known words. Received: pieces[{token!r}]={text!r}, "
                "whose words are all outside the vocabulary."
            )
        rows.append(table[ids].mean(axis=0))
    return rows


def extend_vocabulary(tokenizer, encoder, new_tokens, init="mean", pieces=None):
    """Adds words to a `word_tokenizer` and the matching rows to a `TextTransformerEncoder`.

    A pretrained text encoder meets a target domain with words its vocabulary lacks
    (clinical terms for a general-language model): the new words get ids after the
    old ones, and the token-embedding matrix gets one new row each, initialised from
    the mean of the existing rows (`init="mean"`) or, with `init="pieces"`, from the
    mean embedding of known words that describe the new one (`pieces`, e.g.
    `{"cardiomyopathy": "heart muscle disease"}`; words missing from `pieces` get the
    mean). Every old id, old row and other weight is kept, so the encoder's outputs
    on old-vocabulary texts do not change; continue pre-training (or fine-tune) to
    learn the new rows.

    Args:
        tokenizer: a `keras_transfer.layers.word_tokenizer` (a `TextVectorization`).
        encoder: a `TextTransformerEncoder` whose `vocabulary_size` equals the tokenizer's.
        new_tokens: the new words, lower-case, without spaces, not yet in the vocabulary.
        init: "mean" or "pieces" (above).
        pieces: dict new word -> text of known words, for `init="pieces"`.

    Returns:
        `(tokenizer, encoder)`: a new tokenizer (old ids unchanged, new words after
        them) and a new, built encoder with `vocabulary_size + len(new_tokens)` rows.

    Raises:
        ValueError: if the sizes of tokenizer and encoder disagree, `new_tokens` is
            empty or holds repeated, empty, multi-word or known words, `init` is
            unknown, or a `pieces` text has no known word.

    Reference:
        Gu et al., "Domain-Specific Language Model Pretraining for Biomedical Natural
        Language Processing", ACM Transactions on Computing for Healthcare 2021 (domain
        vocabularies); Hewitt, "Initializing New Word Embeddings for Pretrained
        Language Models", 2021 (mean initialisation).

    Example:

    >>> tokenizer = keras_transfer.layers.word_tokenizer(vocabulary=["heart", "muscle"], sequence_length=3)
    >>> encoder = keras_transfer.layers.TextTransformerEncoder(
    ...     tokenizer.vocabulary_size(), 3, embedding_dim=4, num_layers=1, num_heads=1)
    >>> tokenizer, encoder = keras_transfer.recipes.extend_vocabulary(
    ...     tokenizer, encoder, ["myocardium"], init="pieces", pieces={"myocardium": "heart muscle"})
    >>> tokenizer(["heart myocardium"]).numpy().tolist(), encoder.vocabulary_size
    ([[2, 4, 0]], 5)
    """
    if not isinstance(encoder, TextTransformerEncoder):
        raise ValueError(
            "`encoder` must be a keras_transfer.layers.TextTransformerEncoder. "
            f"Received: encoder of type {type(encoder).__name__}"
        )
    vocabulary = list(tokenizer.get_vocabulary())
    if len(vocabulary) != encoder.vocabulary_size:
        raise ValueError(
            f"`encoder` must have the tokenizer's vocabulary size. Received: encoder.vocabulary_size="
            f"{encoder.vocabulary_size}, tokenizer.vocabulary_size()={len(vocabulary)}. Pass the pair used together."
        )
    tokens = _check_new_tokens(new_tokens, set(vocabulary))
    if init not in INITIALIZERS:
        raise ValueError(f"`init` must be one of {INITIALIZERS}. Received: init={init!r}")
    words = vocabulary[2:] + tokens  # without the padding "" and out-of-vocabulary "[UNK]" entries
    new_tokenizer = word_tokenizer(vocabulary=words, sequence_length=tokenizer.get_config()["output_sequence_length"])
    _check_reachable(new_tokenizer, tokens, len(vocabulary))
    if not encoder.built:
        encoder.build((None, encoder.sequence_length))
    table = np.asarray(encoder.token_embedding.embeddings.numpy())
    mean = table[1:].mean(axis=0)  # every row but padding
    rows = _piece_rows(tokens, pieces or {}, tokenizer, table) if init == "pieces" else [None] * len(tokens)
    new_rows = np.stack([mean if row is None else row for row in rows]).astype(table.dtype)

    config = encoder.get_config()
    config["vocabulary_size"] = len(vocabulary) + len(tokens)
    extended = TextTransformerEncoder.from_config(config)
    extended.build((None, encoder.sequence_length))
    for old, new in zip(encoder.weights, extended.weights):
        value = old.numpy()
        new.assign(np.concatenate([value, new_rows]) if old is encoder.token_embedding.embeddings else value)
    return new_tokenizer, extended
