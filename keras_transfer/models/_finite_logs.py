"""NaN in the model, NaN in the logs.

A step whose predictions or freshly updated weights are not finite must not log a
finite metric: the accuracy of NaN logits is the accuracy of `argmax == 0` (a
finite number), and a loss computed before the optimizer step turned the weights
NaN is finite too. `keras.callbacks.TerminateOnNaN` then fires a batch late or
never, and the history looks healthy while the model is broken.
"""

import tensorflow as tf
from keras import ops


def _floating(t):
    return tf.as_dtype(t.dtype).is_floating


def all_finite(tensors):
    """Scalar bool tensor: every floating tensor (or variable) in `tensors` is free of NaN and
    Inf. Integer tensors (uint8 images, counters) count as finite."""
    flags = [ops.all(ops.isfinite(ops.convert_to_tensor(t))) for t in tensors if _floating(t)]
    if not flags:
        return ops.convert_to_tensor(True)
    return ops.all(ops.stack(flags))


def weights_finite(model):
    """Scalar bool tensor: all of `model`'s weights (trainable or not) are finite."""
    return all_finite(model.weights)


def nan_unless(finite, value):
    """`value` where `finite`, else NaN. Floating values keep float32/float64; integer and
    half-precision values come back as float32 (metrics are float32)."""
    value = ops.convert_to_tensor(value)
    if not _floating(value) or tf.as_dtype(value.dtype) in (tf.float16, tf.bfloat16):
        value = ops.cast(value, "float32")
    return ops.where(finite, value, ops.cast(float("nan"), value.dtype))


def model_state_is_finite(model, y_pred):
    """The predictions and the model's trainable weights (after the update) are finite."""
    return all_finite(tf.nest.flatten(y_pred) + [v.value for v in model.trainable_variables])


def poison_metrics(metrics, finite):
    """Sets every floating state variable of `metrics` to NaN unless `finite` (a weighted
    sum or count that is NaN makes the result NaN for the rest of the epoch)."""
    for metric in metrics:
        for variable in metric.variables:
            if _floating(variable):
                variable.assign(nan_unless(finite, variable.value))


def compute_metrics_nan_unless_finite(model, compute_metrics, x, y, y_pred, sample_weight=None):
    """`compute_metrics(x, y, y_pred, sample_weight)`, then every metric of `model` reads
    NaN (for the rest of the epoch) once its inputs, predictions or weights are not finite.

    The metric states are poisoned rather than the inputs: Keras applies `sample_weight`
    to `weighted_metrics` only, and the accuracy of NaN logits is a finite number.
    Returns `model.get_metrics_result()`.
    """
    # The inputs too: NaN does not always reach the outputs (oneDNN's fused MatMul+ReLU maps it to 0).
    inputs = [t for t in tf.nest.flatten(x) if t is not None]
    finite = ops.logical_and(model_state_is_finite(model, y_pred), all_finite(inputs))
    compute_metrics(x, y, y_pred, sample_weight)
    poison_metrics(model.metrics, finite)
    return model.get_metrics_result()
