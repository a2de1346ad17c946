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


def _tensor_spec(spec, dtype=None):
    return tf.TensorSpec(spec.shape, dtype or spec.dtype, name=getattr(spec, "name", None))


def _other_width(dtype):
    return {tf.int32: tf.int64, tf.int64: tf.int32}.get(tf.as_dtype(dtype))


def export_both_integer_widths(model, filepath, input_signature, verbose=None):
    """Exports `model` with a `serve` endpoint that takes its integer inputs as int32 or int64.

    Token ids come as int32 (keras-hub tokenizers) or int64 (`TextVectorization`,
    NumPy, `tf.data` from Python ints), and `predict` takes both; a SavedModel function
    has one dtype per traced signature, so `serve` is traced twice (the other width is
    cast to the declared one inside). `serving_default` keeps the declared dtypes.
    """
    specs = tf.nest.map_structure(_tensor_spec, input_signature)
    other = tf.nest.map_structure(lambda s: _tensor_spec(s, _other_width(s.dtype) or s.dtype), specs)
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(autograph=False)
    def serve(*args):
        args = tf.nest.map_structure(lambda t, s: tf.cast(t, s.dtype), list(args), list(specs))
        return model(*args, training=False)

    serve.get_concrete_function(*specs)
    serve.get_concrete_function(*other)
    archive.add_endpoint("serve", serve)
    archive.write_out(filepath, verbose=True if verbose is None else verbose)


class ExportsDeclaredInputs:
    """Mixin for a subclassed `keras.Model`: `export()` works straight after `fit`
    and after `.keras` reload, with the input dtypes clients send (integer inputs
    as int32 or int64: `serve` takes both, `serving_default` the declared one).

    Subclasses implement `serving_input_signature()`: the list of positional
    arguments of `call()` as `keras.InputSpec` structures.
    """

    def serving_input_signature(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `serving_input_signature()`.")

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs):
        if input_signature is None:
            input_signature = self.serving_input_signature()
            widths = [_other_width(s.dtype) for s in tf.nest.flatten(input_signature)]
            if format == "tf_saved_model" and not kwargs and any(widths):
                return export_both_integer_widths(self, filepath, input_signature, verbose)
        return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
