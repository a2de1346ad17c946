"""`export()` for subclassed models that `fit` never calls.

Keras 3 exports a subclassed model with the input signature recorded at its
first `__call__`: a model whose `train_step` calls only its sub-models, or one
just reloaded from `.keras`, has none ("The model provided has never called"),
and every recorded input is declared with the model's float dtype, integer ids
included. Models here declare their serving inputs instead.
"""

import keras
import tensorflow as tf


def float32_outputs(outputs):
    """Half-precision outputs (mixed precision) as float32; other dtypes unchanged."""

    def cast(t):
        if keras.backend.standardize_dtype(t.dtype) in ("float16", "bfloat16"):
            return keras.ops.cast(t, "float32")
        return t

    return tf.nest.map_structure(cast, outputs)


def input_spec_like(tensor, dtype=None):
    """A `keras.InputSpec` with `tensor`'s shape (any batch size) and dtype."""
    shape = tuple(tensor.shape)
    return keras.InputSpec(shape=(None,) + shape[1:], dtype=dtype or tensor.dtype)


class ExportsDeclaredInputs:
    """Mixin for a subclassed `keras.Model`: `export()` works straight after `fit`
    and after `.keras` reload, with the input dtypes clients send.

    Subclasses implement `serving_input_signature()`: the list of positional
    arguments of `call()` as `keras.InputSpec` structures.
    """

    def serving_input_signature(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `serving_input_signature()`.")

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        if input_signature is None:
            input_signature = self.serving_input_signature()
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
