"""AdaBN (Li et al., 2016): re-estimate every BatchNormalization statistic on target data."""

import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.utils import validation
from keras_transfer.utils.model_graph import batch_norm_layers


class _MomentRecorder:
    """Replaces a BN layer's `call` for one pass: normalises with the batch moments and sums them."""

    def __init__(self, layer):
        self.layer = layer
        self.count = 0.0
        self.sum = None
        self.sum_squares = None
        self.order = []

    def __call__(self, inputs, training=None, mask=None):
        layer = self.layer
        if self not in self.order:
            self.order.append(self)
        x = ops.cast(inputs, "float32")
        axis = layer.axis if layer.axis >= 0 else len(x.shape) + layer.axis
        reduction = [i for i in range(len(x.shape)) if i != axis]
        mean, variance = ops.moments(x, axes=reduction)
        rows = float(np.prod([x.shape[i] for i in reduction]))
        mean_np = ops.convert_to_numpy(mean).astype("float64")
        variance_np = ops.convert_to_numpy(variance).astype("float64")
        if self.sum is None:
            self.sum = np.zeros_like(mean_np)
            self.sum_squares = np.zeros_like(mean_np)
        self.count += rows
        self.sum += rows * mean_np
        self.sum_squares += rows * (variance_np + mean_np**2)
        shape = [1] * len(x.shape)
        shape[axis] = x.shape[axis]
        outputs = (x - ops.reshape(mean, shape)) / ops.sqrt(ops.reshape(variance, shape) + layer.epsilon)
        if layer.scale:
            outputs = outputs * ops.reshape(ops.cast(layer.gamma, "float32"), shape)
        if layer.center:
            outputs = outputs + ops.reshape(ops.cast(layer.beta, "float32"), shape)
        return ops.cast(outputs, inputs.dtype)

    def statistics(self):
        mean = self.sum / self.count
        variance = np.maximum(self.sum_squares / self.count - mean**2, 0.0)
        return mean, variance


def _batches(x, batch_size):
    if isinstance(x, tf.data.Dataset):
        for element in x:
            if isinstance(element, (tuple, list)):
                element = element[0]
            yield element
        return
    validation.check_not_empty(x, "x")
    validation.check_finite(x, "x")
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def _record_pass(model, recorders, x, batch_size):
    """One pass over `x` with `recorders` in place of their layers' `call`.

    Returns the recorders that were called, in call order.
    """
    order = []
    for recorder in recorders:
        recorder.count, recorder.sum, recorder.sum_squares = 0.0, None, None
        recorder.order = order
        recorder.layer.call = recorder
    seen = 0
    try:
        for batch in _batches(x, batch_size):
            model(batch, training=False)
            seen += int(tf.nest.flatten(batch)[0].shape[0])
    finally:
        for recorder in recorders:
            del recorder.layer.call
    if seen == 0:
        raise ValueError("`x` must contain at least one example. Received: an empty dataset.")
    return order


def _assign(recorder):
    mean, variance = recorder.statistics()
    layer = recorder.layer
    layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
    layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    return getattr(layer, "path", layer.name), int(recorder.count)


def adapt_batch_norm(model, x, batch_size=256, layerwise=False):
    """AdaBN: replaces the moving mean/variance of every BatchNormalization layer by target statistics.

    One pass over `x` (the unlabelled target inputs) with the model in inference mode,
    except that each BatchNormalization layer normalises with the moments of the
    current batch (as in training) and accumulates them. Afterwards each layer's
    moving mean and variance are the pooled mean and (population) variance of its
    inputs over all of `x` (law of total variance over the batches). No weight other
    than these statistics changes; dropout stays off. With `batch_size >= len(x)`,
    this is exactly Li et al.'s layer-by-layer AdaBN; smaller batches normalise the
    inputs of deeper layers with per-batch moments during the pass (the usual
    approximation, as in "train-mode BN, eval-mode everything else").
    `layerwise=True` is Li et al.'s algorithm exactly at any `batch_size` (memory bounded
    by one batch): one pass per BatchNormalization layer, in call order, each layer's
    statistics pooled over all of `x` with the layers before it already adapted.
    Keras has no AdaBN: written by hand (a temporary `call` replacement on each BN layer).

    Args:
        model: a Keras model containing BatchNormalization layers (nested models too).
        x: target inputs: an array, or a `tf.data.Dataset` of inputs (or `(x, ...)` tuples);
            a dataset must be re-iterable for `layerwise=True`.
        batch_size: rows per forward pass when `x` is an array.
        layerwise: one pass per BatchNormalization layer (exact) instead of one pass in all.

    Returns:
        A dict `{layer.path or name: number of examples used}` of the adapted layers.

    Raises:
        ValueError: if `batch_size` is not a positive integer, `layerwise` is not a
            bool, or `model` has no BatchNormalization layer.

    Reference:
        Li et al., "Revisiting Batch Normalization For Practical Domain
        Adaptation", arXiv:1603.04779, 2016.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization(name="bn")])
    >>> x = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]], "float32")
    >>> list(keras_transfer.recipes.adapt_batch_norm(model, x).values())
    [3]
    >>> bn = model.get_layer("bn")
    >>> np.round(np.asarray(bn.moving_mean), 4), np.round(np.asarray(bn.moving_variance), 4)
    (array([2., 3.], dtype=float32), array([2.6667, 2.6667], dtype=float32))
    """
    validation.check_positive_int("batch_size", batch_size)
    if not isinstance(layerwise, bool):
        raise ValueError(f"`layerwise` must be True or False. Received: layerwise={layerwise!r}")
    layers = batch_norm_layers(model)
    if not layers:
        raise ValueError(
            "`model` must contain at least one `BatchNormalization` layer for AdaBN. Received: "
            f"model {getattr(model, 'name', model)!r} without one. AdaBN only changes "
            "BatchNormalization statistics."
        )
    recorders = [_MomentRecorder(layer) for layer in layers]
    if not layerwise:
        _record_pass(model, recorders, x, batch_size)
        # A recorder never called is a BN layer not on the path of `model(x)`.
        return dict(_assign(r) for r in recorders if r.sum is not None)
    report, pending = {}, recorders
    while pending:
        order = _record_pass(model, pending, x, batch_size)
        if not order:
            break  # the pending layers are not on the path of `model(x)`.
        # Every BN layer called before `order[0]` in this pass is already adapted, so its
        # statistics are exact; the others are re-estimated in the next pass.
        path, count = _assign(order[0])
        report[path] = count
        pending = [r for r in pending if r is not order[0]]
    return report
