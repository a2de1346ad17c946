"""Vocabulary mapping: a pretrained text encoder re-indexed for another tokenizer's vocabulary.

The opposite of `extend_vocabulary`: the target data come tokenized with their own
vocabulary, and the pretrained encoder knows another. Each target token is mapped onto
the encoder's vocabulary (exact matches directly; unmatched words to the
out-of-vocabulary id, the mean row, or the mean of their known pieces), as an id table
or as a new embedding indexed by the target's ids.
"""

import keras
import numpy as np

from keras_transfer.layers.text_transformer_encoder import TextTransformerEncoder
from keras_transfer.utils import validation

UNMATCHED = ("oov", "mean", "pieces")
PADDING_TOKENS = ("", "[PAD]", "<pad>")


def _vocabulary(value, name):
    """The token list of a tokenizer (`get_vocabulary()`) or of a list, checked."""
    if hasattr(value, "get_vocabulary"):
        value = value.get_vocabulary()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(
            f"`{name}` must be a tokenizer with `get_vocabulary()` or a non-empty list of tokens in id order. "
            f"Received: {name}={value!r}"
        )
    tokens = list(value)
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        raise ValueError(f"`{name}` must hold strings. Received non-string tokens: {bad[:5]}")
    seen, repeated = set(), []
    for token in tokens:
        if token in seen and token not in repeated:
            repeated.append(token)
        seen.add(token)
    if repeated:
        raise ValueError(f"`{name}` must hold distinct tokens (one id each). Received repeated tokens: {repeated[:5]}")
    return tokens


def _mapping(target, source, oov_token):
    """`(table, source index, oov id)` with `table[target id] = source id`."""
    index = {token: i for i, token in enumerate(source)}
    if oov_token not in index:
        raise ValueError(
            f"`oov_token` must be a token of the source vocabulary. Received: oov_token={oov_token!r}, "
            f"source vocabulary starting {source[:4]}. Pass the token the source tokenizer uses for unknown words."
        )
    oov = index[oov_token]
    table = np.array([index.get(token, oov) for token in target], dtype="int32")
    if target[0] in PADDING_TOKENS and source[0] in PADDING_TOKENS:
        table[0] = 0  # padding onto padding, whatever each tokenizer calls it
    return table, index, oov


def vocabulary_mapping(target, source, oov_token="[UNK]"):
    """A table mapping each target token id to the id of the same token in the source vocabulary.

    Exact matches map directly; padding (id 0, "" or "[PAD]") maps to padding; every
    other target token maps to the source's out-of-vocabulary id, as the source
    tokenizer would treat the word. Apply it to target ids with `np.take(table, ids)`
    or `tf.gather(table, ids)` (also inside a `tf.data` pipeline) to feed them to the
    source encoder.

    Args:
        target: the target tokenizer (anything with `get_vocabulary()`, e.g. a
            `keras_transfer.layers.word_tokenizer` or a keras-hub tokenizer), or its
            vocabulary as a list of tokens in id order (as `get_vocabulary()` returns).
        source: the source (pretrained) tokenizer or vocabulary, likewise.
        oov_token: the source's out-of-vocabulary token ("[UNK]" for
            `TextVectorization` and BERT).

    Returns:
        An int32 NumPy array `table` of length `len(target vocabulary)`:
        `table[target_id] = source_id`.

    Raises:
        ValueError: if a vocabulary is empty, holds repeated or non-string tokens, or
            `oov_token` is not in the source vocabulary.

    Example:

    >>> target = ["", "[UNK]", "heart", "beat", "heartbeat"]
    >>> source = ["", "[UNK]", "beat", "heart"]
    >>> keras_transfer.recipes.vocabulary_mapping(target, source)
    array([0, 1, 3, 2, 1], dtype=int32)
    """
    target = _vocabulary(target, "target")
    source = _vocabulary(source, "source")
    return _mapping(target, source, oov_token)[0]


def _segment(word, index):
    """Greedy longest-match pieces of `word` in the source vocabulary (`##` continuations first), or None."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end]
            found = next((c for c in ((f"##{piece}", piece) if start else (piece,)) if c in index), None)
            if found is not None:
                pieces.append(index[found])
                start = end
                break
        else:
            return None
    return pieces


def _piece_ids(token, pieces, index):
    """Source ids describing an unmatched target token: `pieces[token]`'s words, else its greedy pieces."""
    if token in pieces:
        ids = [index[word] for word in str(pieces[token]).split() if word in index]
        if not ids:
            raise ValueError(
                f"`pieces` must describe each token with source tokens. Received: pieces[{token!r}]="
                f"{pieces[token]!r}, none of whose words is in the source vocabulary."
            )
        return ids
    return _segment(token, index) if token else None


def _embedding_of(encoder):
    """The token-embedding matrix of a `TextTransformerEncoder` or an `Embedding` layer."""
    if isinstance(encoder, TextTransformerEncoder):
        if not encoder.built:
            encoder.build((None, encoder.sequence_length))
        return encoder.token_embedding.embeddings
    if isinstance(encoder, keras.layers.Embedding):
        if not encoder.built:
            encoder.build((None,))
        return encoder.embeddings
    raise ValueError(
        "`encoder` must be a keras_transfer.layers.TextTransformerEncoder or a keras.layers.Embedding. "
        f"Received: encoder of type {type(encoder).__name__}"
    )


def _rebuilt(encoder, size, rows):
    """A copy of `encoder` with `size` token ids, its embedding `rows` and every other weight copied."""
    config = encoder.get_config()
    if isinstance(encoder, TextTransformerEncoder):
        config["vocabulary_size"] = size
        new = TextTransformerEncoder.from_config(config)
        new.build((None, encoder.sequence_length))
        old_table, new_table = encoder.token_embedding.embeddings, new.token_embedding.embeddings
    else:
        config["input_dim"] = size
        new = type(encoder).from_config(config)
        new.build((None,))
        old_table, new_table = encoder.embeddings, new.embeddings
    for old, fresh in zip(encoder.weights, new.weights):
        fresh.assign(rows if old is old_table else old.numpy())
    if new_table.shape != rows.shape:  # guards the weight order assumed above
        raise ValueError(f"Could not rebuild `encoder`: embedding shape {new_table.shape} != {rows.shape}.")
    return new


def map_vocabulary(target, source, encoder, unmatched="oov", pieces=None, oov_token="[UNK]"):
    """A copy of a pretrained encoder whose token embedding is indexed by the target's vocabulary.

    The target data keep their own tokenizer; row `i` of the new embedding is the
    source row of target token `i` when the source vocabulary has it (padding onto
    padding). Target tokens the source lacks get, by `unmatched`: "oov" the source's
    out-of-vocabulary row (the encoder then sees exactly what the source tokenizer
    would have given it: on a text whose words the target tokenizer knows (or neither
    does), its outputs from the target's ids equal the original's from the source's
    ids); "mean" the mean
    of the source rows but padding; "pieces" the mean of the rows of the word's pieces:
    the source words of `pieces[word]` when given, else a greedy longest-match split of
    the word into source tokens (WordPiece "##" continuations first), else the
    out-of-vocabulary row. Every other weight is copied; fine-tune to adapt the rows.

    Args:
        target: the target tokenizer (with `get_vocabulary()`) or its vocabulary, a
            list of tokens in id order.
        source: the pretrained tokenizer or vocabulary, likewise (its ids index
            `encoder`'s embedding).
        encoder: a `keras_transfer.layers.TextTransformerEncoder`, or a
            `keras.layers.Embedding`, with one row per source token. Not modified.
        unmatched: "oov", "mean" or "pieces" (above).
        pieces: for `unmatched="pieces"`, an optional dict target token -> text of
            source tokens, e.g. `{"heartbeat": "heart beat"}`.
        oov_token: the source's out-of-vocabulary token.

    Returns:
        A new, built encoder of the same class with `len(target vocabulary)` token ids.

    Raises:
        ValueError: if a vocabulary is empty or holds repeated or non-string tokens,
            `oov_token` is not a source token, `unmatched` is unknown, `pieces` is not
            a dict of target tokens or describes one with no source token, or
            `encoder` is of another type or has another vocabulary size than `source`.

    Reference:
        Mikolov et al., "Exploiting Similarities among Languages for Machine
        Translation", 2013 (mapping vocabularies onto a pretrained space); Wu et al.,
        "Google's Neural Machine Translation System", 2016 (WordPiece pieces).

    Example:

    >>> target = ["", "[UNK]", "heart", "beat", "heartbeat"]
    >>> source = ["", "[UNK]", "beat", "heart"]
    >>> embedding = keras.layers.Embedding(4, 2, embeddings_initializer="ones")
    >>> embedding.build((None,))
    >>> embedding.set_weights([np.arange(8, dtype="float32").reshape(4, 2)])
    >>> mapped = keras_transfer.recipes.map_vocabulary(target, source, embedding, unmatched="pieces")
    >>> mapped.embeddings.numpy()
    array([[0., 1.],
           [2., 3.],
           [6., 7.],
           [4., 5.],
           [5., 6.]], dtype=float32)
    """
    target = _vocabulary(target, "target")
    source = _vocabulary(source, "source")
    validation.check_one_of("unmatched", unmatched, UNMATCHED)
    if pieces is not None and (
        not isinstance(pieces, dict) or any(key not in target for key in pieces) or unmatched != "pieces"
    ):
        raise ValueError(
            "`pieces` must be None or, with unmatched='pieces', a dict whose keys are target tokens. "
            f"Received: pieces={pieces!r}, unmatched={unmatched!r}"
        )
    table, index, oov = _mapping(target, source, oov_token)
    variable = _embedding_of(encoder)
    source_rows = np.asarray(keras.ops.convert_to_numpy(variable))
    if len(source_rows) != len(source):
        raise ValueError(
            f"`encoder` must have one embedding row per source token. Received: {len(source_rows)} rows for "
            f"{len(source)} source tokens. Pass the tokenizer the encoder was trained with."
        )
    rows = source_rows[table].copy()
    for i, token in enumerate(target):
        if table[i] != oov or token == oov_token or unmatched == "oov":
            continue
        ids = _piece_ids(token, pieces or {}, index) if unmatched == "pieces" else list(range(1, len(source)))
        if ids:
            rows[i] = source_rows[ids].mean(axis=0)
    return _rebuilt(encoder, len(target), rows.astype(source_rows.dtype))
