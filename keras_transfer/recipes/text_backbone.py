"""Text backbones in `build_classifier`: token-id inputs, dict inputs and outputs, masked pooling.

A text backbone is a built `keras.Model` whose inputs are all integer tensors (token
ids, keras-hub's `{"token_ids", "padding_mask", "segment_ids"}`), or a
`TextTransformerEncoder` layer (wrapped here in a model taking token ids).
"""

import keras
from keras import ops

from keras_transfer.layers.text_transformer_encoder import TextTransformerEncoder

PADDING_ID = 0  # the padding id of keras.layers.TextVectorization, TextTransformerEncoder and BERT
# A masked position's value before the max pool: below any feature, within float16's range.
_MASKED_VALUE = -3e4


def is_text_backbone(backbone):
    """Whether `backbone` is a `TextTransformerEncoder` or a built model taking only integer inputs."""
    if isinstance(backbone, TextTransformerEncoder):
        return True
    if not isinstance(backbone, keras.Model) or not getattr(backbone, "inputs", None):
        return False
    return all("int" in keras.backend.standardize_dtype(t.dtype) for t in backbone.inputs)


def check_sequence_length(input_shape):
    """`None` or `(length,)` for a text backbone's `input_shape`; a ValueError otherwise."""
    if input_shape is None:
        return None
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 1
        or (input_shape[0] is not None and (isinstance(input_shape[0], bool) or int(input_shape[0]) < 1))
    ):
        raise ValueError(
            "`input_shape` must be None (the text backbone's own) or (sequence_length,) for a text backbone. "
            f"Received: input_shape={input_shape!r}"
        )
    return tuple(input_shape)


def as_text_model(backbone, input_shape):
    """A built model taking token ids: `backbone` itself, or a `TextTransformerEncoder` wrapped in one."""
    if isinstance(backbone, keras.Model):
        return backbone
    length = input_shape[0] if input_shape else backbone.sequence_length
    # int64: what `word_tokenizer` (TextVectorization), NumPy and tf.data give, so that the exported
    # classifier's `serve` takes the ids users send (a functional model exports one dtype per input).
    token_ids = keras.Input((length,), dtype="int64", name="token_ids")
    return keras.Model(token_ids, backbone(token_ids), name=backbone.name)


def text_inputs(base, input_shape):
    """New `keras.Input`s matching `base`'s inputs (a dict for dict inputs), `input_shape` overriding the length."""
    structure = base.input

    def make(tensor, name):
        shape = tuple(input_shape) if input_shape else tuple(tensor.shape[1:])
        return keras.Input(shape=shape, dtype=tensor.dtype, name=name)

    if isinstance(structure, dict):
        return {key: make(tensor, key) for key, tensor in structure.items()}
    if isinstance(structure, (list, tuple)):
        if len(structure) != 1:
            raise ValueError(
                "`backbone` must take token ids, or a dict of inputs (as keras-hub backbones do). "
                f"Received: a backbone with {len(structure)} positional inputs. Wrap it in a model with dict inputs."
            )
        structure = structure[0]
    return make(structure, "token_ids")


def pool_text_features(outputs, inputs, pooling):
    """One vector per text from a text backbone's outputs.

    "auto": the backbone's own pooled output (a rank-2 output or keras-hub's
    "pooled_output"), else the masked mean of the sequence; "avg" / "max": masked
    mean / max over the non-padding positions of the sequence (a rank-2 output passes
    through). The mask is the "padding_mask" input, else `token_ids != 0`.
    """
    if isinstance(outputs, dict):
        if pooling == "auto" and "pooled_output" in outputs:
            return outputs["pooled_output"]
        if "sequence_output" not in outputs:
            raise ValueError(
                "`backbone` must return a tensor, or a dict with 'sequence_output' (and 'pooled_output'). "
                f"Received: a dict with keys {sorted(outputs)}"
            )
        outputs = outputs["sequence_output"]
    if len(outputs.shape) == 2:
        return outputs
    if len(outputs.shape) != 3:
        raise ValueError(
            "`backbone` must return (batch, features) or (batch, length, features) for text. "
            f"Received: output shape {tuple(outputs.shape)}"
        )
    if isinstance(inputs, dict) and "padding_mask" in inputs:
        mask = ops.cast(inputs["padding_mask"], "bool")
    else:
        token_ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
        mask = ops.not_equal(token_ids, PADDING_ID)
    if pooling == "max":
        masked = ops.where(ops.expand_dims(mask, -1), outputs, _MASKED_VALUE)
        return keras.layers.GlobalMaxPooling1D(name="pool")(masked)
    return keras.layers.GlobalAveragePooling1D(name="pool")(outputs, mask=mask)
