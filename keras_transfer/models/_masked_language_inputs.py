"""Private helpers of `MaskedLanguageModel`: encoder kinds, input structures and array checks.

Three kinds of encoder are accepted: a token-level layer or functional model
taking token ids, a `TextTransformerEncoder(..., num_segments=k)` taking
`{"token_ids", "segment_ids"}`, and a keras-hub backbone such as `BertBackbone`
whose inputs are the dict `{"token_ids", "segment_ids", "padding_mask"}` and whose
outputs are `{"sequence_output", "pooled_output"}`.
"""

import keras
import numpy as np
from keras import ops

from keras_transfer.utils import validation

INPUT_KEYS = ("token_ids", "segment_ids", "padding_mask")


def dict_input_encoder(encoder):
    """A functional model declaring dict inputs with a `token_ids` key, else False."""
    try:
        declared = encoder.input if isinstance(encoder, keras.Model) else None
    except (AttributeError, ValueError):
        declared = None
    return isinstance(declared, dict) and "token_ids" in declared


def sequence_length(encoder):
    """The encoder's number of token positions: `sequence_length`, `max_sequence_length` or its declared input."""
    length = getattr(encoder, "sequence_length", None) or getattr(encoder, "max_sequence_length", None)
    if length is None and getattr(encoder, "inputs", None):
        length = encoder.inputs[0].shape[1]
    if not isinstance(encoder, keras.layers.Layer) or not isinstance(length, int):
        raise ValueError(
            "`encoder` must be a Keras layer mapping token ids (batch, length) to (batch, length, dim) with a "
            "known length: a `TextTransformerEncoder(..., pooling=None)`, a keras-hub `BertBackbone` or a "
            f"functional model with a fixed input length. Received: encoder of type {type(encoder).__name__}"
        )
    return length


def sequence_width(encoder, length):
    """The per-token feature width; `encoder` must return `(batch, length, dim)` (or a `sequence_output`)."""
    if dict_input_encoder(encoder):
        output = encoder.output
        shape = tuple(output["sequence_output"].shape) if isinstance(output, dict) else tuple(output.shape)
    else:
        if not encoder.built:
            encoder.build((None, length))
        shape = tuple(encoder.compute_output_shape((None, length)))
    if len(shape) != 3:
        raise ValueError(
            "`encoder` must return one vector per token, (batch, length, dim). Received: output shape "
            f"{shape}. Build TextTransformerEncoder with pooling=None."
        )
    return int(shape[-1])


def has_pooled_output(encoder):
    """Whether the encoder returns keras-hub's `pooled_output` (BERT's first-token Dense(tanh) pooler)."""
    return dict_input_encoder(encoder) and isinstance(encoder.output, dict) and "pooled_output" in encoder.output


def split_inputs(inputs, num_segments):
    """`(token_ids, segment_ids or None)` from plain token ids or an input dict."""
    if not isinstance(inputs, dict):
        return inputs, None
    unknown = sorted(set(inputs) - set(INPUT_KEYS))
    if "token_ids" not in inputs or unknown:
        raise ValueError(
            f"`x` must be token ids or a dict with keys among {list(INPUT_KEYS)} ('token_ids' required). "
            f"Received: keys {sorted(inputs)}"
        )
    if "segment_ids" in inputs and num_segments is None:
        raise ValueError(
            "`x` holds `segment_ids` but the encoder takes token ids only. Received: an encoder without "
            "num_segments. Build TextTransformerEncoder(..., num_segments=2) or drop segment_ids."
        )
    return inputs["token_ids"], inputs.get("segment_ids")


def padding_mask(token_ids):
    """keras-hub's `padding_mask`: 1 at real tokens (id != 0)."""
    return ops.cast(ops.not_equal(token_ids, 0), "int32")


def _check_id_array(token_ids):
    if token_ids.dtype.kind in "USO":
        raise ValueError(
            f"`x` must hold integer token ids. Received: an array of dtype {token_ids.dtype}. Tokenize text first, "
            "e.g. with keras_transfer.layers.word_tokenizer."
        )
    if token_ids.ndim != 2 or not token_ids.size:
        raise ValueError(
            f"`x` must hold token ids of shape (batch, length), batch and length > 0. Received: shape "
            f"{token_ids.shape}."
        )
    if token_ids.dtype.kind == "f" and not np.all(np.isfinite(token_ids) & (token_ids == np.round(token_ids))):
        raise ValueError(
            "`x` must hold integer token ids. Received: a float array with non-integer or non-finite values. "
            "Cast whole-number ids with x.astype('int32')."
        )


def _check_token_ids(token_ids, vocabulary_size, unmaskable_ids):
    _check_id_array(token_ids)
    if token_ids.size and (token_ids.min() < 0 or token_ids.max() >= vocabulary_size):
        raise ValueError(
            f"`x` must hold token ids in [0, vocabulary_size={vocabulary_size}). Received: ids from "
            f"{token_ids.min()} to {token_ids.max()}. Tokenize with the vocabulary the encoder was built for."
        )
    if token_ids.ndim == 2:
        empty = np.flatnonzero(~np.any(~np.isin(token_ids, unmaskable_ids), axis=1))
        if empty.size:
            raise ValueError(
                f"Every sequence in `x` must hold a maskable token (an id not in unmaskable_ids={list(unmaskable_ids)}"
                f"). Received: {empty.size} sequence(s) with nothing to mask, e.g. row {empty[0]} = "
                f"{token_ids[empty[0]].tolist()}. Drop empty rows."
            )


def check_arrays(x, y, vocabulary_size, num_segments, unmaskable_ids, next_sentence):
    """ValueErrors for NumPy `fit` / `evaluate` data the model cannot train on (datasets pass unchecked)."""
    if isinstance(x, dict) or isinstance(x, np.ndarray):
        token_ids, segment_ids = split_inputs(x, num_segments)
        if isinstance(token_ids, np.ndarray):
            _check_token_ids(token_ids, vocabulary_size, unmaskable_ids)
        if isinstance(segment_ids, np.ndarray) and segment_ids.size:
            if segment_ids.min() < 0 or segment_ids.max() >= num_segments:
                raise ValueError(
                    f"`segment_ids` must lie in [0, num_segments={num_segments}). Received: segment ids from "
                    f"{segment_ids.min()} to {segment_ids.max()}. Number the sentences of a pair 0 and 1."
                )
    if next_sentence and (isinstance(x, dict) or isinstance(x, np.ndarray)):
        if y is None:
            raise ValueError(
                "`y` must hold the is-next labels (0 / 1) with next_sentence=True. Received: y=None. Pass "
                "fit(inputs, is_next) as keras_transfer.datasets.sentence_pairs returns them."
            )
        validation.check_labels(y, 2, name="y")


def require_next_sentence_labels(y):
    """The in-graph check: a dataset without labels cannot train next-sentence prediction."""
    if y is None:
        raise ValueError(
            "`y` must hold the is-next labels (0 / 1) with next_sentence=True. Received: batches without "
            "labels. Yield (inputs, is_next) pairs."
        )
