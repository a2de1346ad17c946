"""Composable MAML operations (Finn et al., 2017) over Keras models.

All functions work on *values* (tensors), never on variables: fast weights are
never assigned into `keras.Variable`s (that would silently cut the second-order
path and overwrite the meta-parameters). A forward pass is
`model.stateless_call(trainable_values, non_trainable_values, x, training=...)`.

The pieces:

- `maml_inner_update(params, grads, learning_rates, first_order)`: one SGD step
  `phi = theta - alpha * grad` on the adapted tensors.
- `maml_inner_loop(forward_fn, loss_fn, params, support_x, support_y, ...)`:
  `steps` inner updates under nested `tf.GradientTape`s; exact second-order
  gradients flow to `params` when it runs inside an outer tape.
- `exact_moments(x, axes, keepdims)`: batch mean/variance with no
  `stop_gradient` (TensorFlow's `tf.nn.moments` stops the gradient of the mean
  inside the variance, which makes second-order gradients through BatchNorm
  wrong while first-order ones stay exact).
- `dense_chain_plan(model, adapted)`: whether a model can run a meta-batch of
  tasks with one set of weights *per task* (batched matmul over the task axis),
  and how; `keras_transfer.ops.maml_tasks.vectorized_forward` runs it.

The per-task forward passes and the rest of what `MetaModel` is built from are
in `keras_transfer.ops.maml_tasks`.
"""

import numbers

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.utils.model_graph import chain_layers
from keras_transfer.utils.model_graph import iter_layers
from keras_transfer.utils.model_graph import override_batchnorm_moments


# --------------------------------------------------------------------- inner
def maml_inner_update(params, grads, learning_rates, first_order=False):
    """One inner gradient step `phi = theta - alpha * grad` on a list of tensors.

    The update of the MAML inner loop, on values (never on variables, so the
    second-order path to the meta-parameters is kept). With `first_order=True`
    the gradients are wrapped in `stop_gradient` (first-order MAML).

    Args:
        params: list of tensors (current fast weights).
        grads: list of tensors (or `None` for a parameter with no gradient),
            same structure as `params`.
        learning_rates: a float, or a list of scalars / tensors broadcastable to
            each parameter (Meta-SGD learns one per entry).
        first_order: if True, the gradients are treated as constants
            (FOMAML): no second-order term reaches the meta-parameters.

    Returns:
        list of tensors `p - lr * g` (a parameter with no gradient is returned
        unchanged), in each parameter's dtype: a Python-float rate is converted
        straight to it, so float64 parameters stay exact in float64.

    Reference:
        Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks", ICML 2017.

    Example:

    >>> import tensorflow as tf
    >>> params = [tf.constant([1.0, 2.0])]
    >>> grads = [tf.constant([0.5, -1.0])]
    >>> keras_transfer.ops.maml_inner_update(params, grads, 0.1)[0].numpy()
    array([0.95, 2.1 ], dtype=float32)
    """
    if not isinstance(learning_rates, (list, tuple)):
        learning_rates = [learning_rates] * len(params)
    updated = []
    for p, g, lr in zip(params, grads, learning_rates):
        if g is None:
            updated.append(p)
            continue
        if first_order:
            g = tf.stop_gradient(g)
        updated.append(p - _as_dtype(lr, p.dtype) * tf.cast(g, p.dtype))
    return updated


def _as_dtype(value, dtype):
    """`value` in `dtype`; a Python number is converted straight to `dtype`.

    `tf.cast(0.3, tf.float64)` goes through float32 first (0.30000001192...), so a
    float64 computation would silently use a rounded learning rate.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return tf.constant(float(value), dtype=dtype)
    return tf.cast(value, dtype)


def maml_inner_loop(
    forward_fn,
    loss_fn,
    params,
    support_x,
    support_y,
    steps=1,
    learning_rates=0.01,
    first_order=False,
):
    """Runs `steps` inner SGD steps from `params` on the support set.

    Each step computes the support loss under a `tf.GradientTape` and applies
    `maml_inner_update`. Run inside an outer tape that watches `params`, the
    result is differentiable with respect to `params` to second order (unless
    `first_order=True`), which is what the MAML meta-gradient needs.

    Args:
        forward_fn: `forward_fn(params, x) -> y_pred`; `params` is the list of
            adapted tensors.
        loss_fn: `loss_fn(y_true, y_pred) -> scalar` (summed over the tasks when
            `params` hold one set of weights per task).
        params: list of tensors (the initialisation theta, read inside the
            caller's outer tape when second-order gradients are wanted).
        support_x: the support inputs, passed to `forward_fn`.
        support_y: the support targets, passed to `loss_fn`.
        steps: number of inner steps (>= 1).
        learning_rates: float, list (one per parameter) or a callable
            `learning_rates(step) -> list` (MAML++ per-step rates).
        first_order: drop the second-order term (FOMAML).

    Returns:
        the list of adapted tensors phi.

    Reference:
        Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks", ICML 2017; Antoniou et al., "How to train your MAML",
        ICLR 2019 (per-step rates).

    Example:

    >>> import tensorflow as tf
    >>> forward = lambda p, x: x * p[0]
    >>> loss = lambda y, y_pred: tf.reduce_mean(tf.square(y - y_pred))
    >>> theta = tf.constant(0.0)
    >>> x, y = tf.constant([1.0, 2.0]), tf.constant([2.0, 4.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(theta)
    ...     (phi,) = keras_transfer.ops.maml_inner_loop(
    ...         forward, loss, [theta], x, y, steps=2, learning_rates=0.1)
    ...     query_loss = loss(y, forward([phi], x))
    >>> float(phi)
    1.5
    >>> round(float(tape.gradient(query_loss, theta)), 4)
    -0.625
    """
    fast = list(params)
    for step in range(steps):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(fast)
            loss = loss_fn(support_y, forward_fn(fast, support_x))
        grads = tape.gradient(loss, fast)
        rates = learning_rates(step) if callable(learning_rates) else learning_rates
        fast = maml_inner_update(fast, grads, rates, first_order=first_order)
    return fast


# ------------------------------------------------------------------ moments
def exact_moments(x, axes, keepdims=False):
    """Mean and (biased) variance of `x` over `axes`, differentiable to any order.

    Written by hand because `tf.nn.moments` (used by `keras.ops.moments` on the
    TensorFlow backend) wraps the mean in `stop_gradient` inside the variance,
    which makes second-order gradients through BatchNorm wrong.

    Args:
        x: a tensor.
        axes: the axis or list of axes to reduce.
        keepdims: if True, the reduced axes are kept with size 1.

    Returns:
        a `(mean, variance)` tuple of tensors.

    Example:

    >>> mean, variance = keras_transfer.ops.exact_moments(
    ...     np.array([[1.0, 2.0], [3.0, 6.0]], "float32"), axes=[0])
    >>> np.asarray(mean), np.asarray(variance)
    (array([2., 4.], dtype=float32), array([1., 4.], dtype=float32))
    """
    mean = ops.mean(x, axis=axes, keepdims=True)
    variance = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
    if not keepdims:
        mean = ops.squeeze(mean, axis=axes)
        variance = ops.squeeze(variance, axis=axes)
    return mean, variance


def patch_batch_normalization(model):
    """Makes every `BatchNormalization` in `model` use `exact_moments`.

    The forward values are unchanged; only the gradient graph differs (exact
    second derivatives). The patch lives on the layer instances, so it is not
    saved; `MetaModel` re-applies it.

    Args:
        model: a Keras model or layer; its `BatchNormalization` layers are
            patched, nested models included.

    Returns:
        The number of layers patched.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
    ...                           keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    >>> keras_transfer.ops.patch_batch_normalization(model)
    1
    """
    return sum(override_batchnorm_moments(layer, exact_moments) for layer in iter_layers(model))


# ----------------------------------------------------------- dense chain
def dense_chain_plan(model, adapted_variables):
    """A vectorisable plan for `model`, or `None` when it does not qualify.

    `model` qualifies when it is a chain of layers in which every layer owning an
    adapted variable is a plain `Dense` (kernel and bias applied on the last axis),
    and no layer has non-trainable weights (BatchNorm statistics are per task, so
    such models take the general per-task path).
    """
    layers = chain_layers(model)
    if not layers:
        return None
    adapted_ids = {id(v) for v in adapted_variables}
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    plan = []
    for layer in layers:
        if layer.non_trainable_weights:
            return None
        owned = [v for v in layer.trainable_weights if id(v) in adapted_ids]
        if not owned:
            plan.append(("shared", layer, [position[id(v)] for v in layer.trainable_weights]))
            continue
        if type(layer) is not keras.layers.Dense:
            return None
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            return None
        if len(owned) != len(layer.trainable_weights):
            return None
        kernel_index = position[id(layer.kernel)]
        bias_index = position[id(layer.bias)] if layer.use_bias else None
        plan.append(("dense", layer, (kernel_index, bias_index)))
    return plan
