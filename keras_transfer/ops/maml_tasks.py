"""Per-task MAML maths: forward passes with fast weights, one task or a meta-batch.

`MetaModel` is built from these and `keras_transfer.ops.maml`. Like that module,
everything works on values (tensors), never on variables.

- `stateless_forward(model, ...)`: one task's forward pass as a function of its
  fast weights (the `forward_fn` of `maml_inner_loop`).
- `tile_per_task` / `vectorized_forward` / `task_summed_loss`: the vectorised
  path, a meta-batch of tasks with one set of weights per task (batched matmul
  over the task axis) for chains planned by `maml.dense_chain_plan`.
- `adapted_weight_indices(model, layer_names)`: the weights an inner loop
  adapts (all of them for MAML, those of a few layers for ANIL).
- `inner_rates_at_step`: learned inner rates (Meta-SGD, MAML++) at one step.
- `batch_norm_statistics`: BatchNorm moving statistics replaced by those of a
  batch (a task's support set), so an adapted model predicts on single examples.
"""

import inspect

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.utils.model_graph import iter_layers


# ------------------------------------------------------------------ one task
def training_kwargs(layer, training):
    """`{"training": training}` when `layer.call` accepts it, else `{}`.

    `stateless_call` hands its keyword arguments straight to `call`, and a
    subclassed model or layer need not declare `training` (a `**kwargs` catch-all
    accepts it).

    Args:
        layer: a Keras layer or model.
        training: the value to pass.

    Returns:
        a dict of keyword arguments for `layer.stateless_call`.
    """
    params = inspect.signature(layer.call).parameters
    if "training" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return {"training": training}
    return {}


def with_fast_weights(values, indices, fast):
    """`values` with the adapted entries replaced by fast weights.

    Args:
        values: list of tensors indexed like `model.trainable_variables`.
        indices: positions in `values` of the adapted weights.
        fast: list of tensors, one per entry of `indices`.

    Returns:
        a new list; `values[indices[j]]` is `fast[j]`, the other entries are kept.
    """
    values = list(values)
    for i, f in zip(indices, fast):
        values[i] = f
    return values


def stateless_forward(model, trainable_values, non_trainable_values, adapted_indices, training=False):
    """The forward pass of one task as a function of its fast weights.

    Builds `forward(fast, x)`, which runs `model.stateless_call` with the adapted
    entries of `trainable_values` replaced by `fast`: the model's variables are
    neither read for them nor assigned, so gradients flow to `fast`.

    Args:
        model: the Keras model.
        trainable_values: tensors of `model.trainable_variables` (theta).
        non_trainable_values: tensors of `model.non_trainable_variables`.
        adapted_indices: positions in `trainable_values` of the adapted weights.
        training: passed to `model.call` (when it accepts it).

    Returns:
        `forward(fast, x) -> y_pred`, `model` on `x` with the adapted weights
        replaced by `fast` (the `forward_fn` of `maml_inner_loop`).

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> theta = [v.value for v in model.trainable_variables]
    >>> forward = keras_transfer.ops.stateless_forward(model, theta, [], [0, 1])
    >>> fast = [np.zeros((3, 2), "float32"), np.ones((2,), "float32")]
    >>> np.asarray(forward(fast, np.ones((4, 3), "float32")))[0]
    array([1., 1.], dtype=float32)
    """
    kwargs = training_kwargs(model, training)

    def forward(fast, x):
        values = with_fast_weights(trainable_values, adapted_indices, fast)
        out, _ = model.stateless_call(values, non_trainable_values, x, **kwargs)
        return out

    return forward


# ----------------------------------------------------------- meta-batch
def tile_per_task(tensors, num_tasks):
    """Each tensor broadcast to `[num_tasks, *shape]`: one copy of the weights per task.

    Args:
        tensors: list of tensors.
        num_tasks: scalar (Python int or tensor), the size of the new leading axis.

    Returns:
        a list of tensors with a leading task axis.
    """
    return [tf.broadcast_to(t[None], tf.concat([[num_tasks], tf.shape(t)], 0)) for t in tensors]


def dense_chain_forward(plan, values, x, training=False):
    """Forward pass of a chain with per-task weights.

    Args:
        plan: from `keras_transfer.ops.maml.dense_chain_plan`.
        values: list indexed like `model.trainable_variables`; an adapted entry
            has a leading task axis (`[T, *shape]`), a shared one has none.
        x: `[T, N, ...]` inputs (tasks, examples, features).

    Returns:
        `[T, N, ...]` outputs.
    """
    h = x
    for kind, layer, index in plan:
        if kind == "dense":
            kernel_index, bias_index = index
            dtype = layer.compute_dtype
            h = ops.cast(h, dtype)
            shape = ops.shape(h)
            flat = ops.reshape(h, (shape[0], -1, shape[-1]))
            kernel = ops.cast(values[kernel_index], dtype)
            out = tf.matmul(flat, kernel)
            if bias_index is not None:
                out = out + ops.expand_dims(ops.cast(values[bias_index], dtype), 1)
            out = ops.reshape(out, tuple(shape[:-1]) + (kernel.shape[-1],))
            h = layer.activation(out) if layer.activation is not None else out
        else:
            # Shared (or weightless) layer: run on the tasks merged into one batch.
            shape = ops.shape(h)
            merged = _merge_task_axis(h)
            layer_values = [values[i] for i in index]
            if layer.weights:
                kwargs = training_kwargs(layer, training)
                merged, _ = layer.stateless_call(layer_values, [], merged, **kwargs)
            else:
                merged = layer(merged, training=training)
            h = ops.reshape(merged, (shape[0], shape[1]) + tuple(merged.shape[1:]))
    return h


def vectorized_forward(plan, trainable_values, adapted_indices, training=False):
    """The forward pass of a meta-batch as a function of per-task fast weights.

    Args:
        plan: from `dense_chain_plan`.
        trainable_values: tensors of `model.trainable_variables` (theta, shared).
        adapted_indices: positions in `trainable_values` of the adapted weights.
        training: passed to the weightless and shared layers.

    Returns:
        `forward(fast, x) -> y_pred` with `fast` the adapted weights with a leading
        task axis (`tile_per_task`), `x` `[T, N, ...]` and `y_pred` `[T, N, ...]`.
    """

    def forward(fast, x):
        values = with_fast_weights(trainable_values, adapted_indices, fast)
        return dense_chain_forward(plan, values, x, training=training)

    return forward


def task_summed_loss(loss_fn, num_tasks):
    """A loss over `[T, N, ...]` tensors: the sum over tasks of each task's mean loss.

    With one set of weights per task (`vectorized_forward`), the gradient of this
    sum with respect to task t's weights is the gradient of task t's own loss.

    Args:
        loss_fn: `loss_fn(y_true, y_pred) -> scalar`, a mean over its batch.
        num_tasks: scalar, T.

    Returns:
        `loss(y_true, y_pred) -> scalar`: `T * loss_fn` over the tasks merged into one
        batch (every task has the same number of examples).
    """

    def loss(y_true, y_pred):
        value = loss_fn(_merge_task_axis(y_true), _merge_task_axis(y_pred))
        return ops.cast(num_tasks, value.dtype) * value

    return loss


def _merge_task_axis(t):
    return ops.reshape(t, (-1,) + tuple(t.shape[2:]))


# ------------------------------------------------------ inner-loop set-up
def adapted_weight_indices(model, layer_names=None):
    """Positions in `model.trainable_variables` of the weights an inner loop adapts.

    MAML adapts every trainable weight; ANIL adapts only those of the head.

    Args:
        model: a Keras model.
        layer_names: None (every trainable weight: MAML) or names of layers nested
            in `model` whose weights are adapted (ANIL adapts just the head).

    Returns:
        a sorted list of indices into `model.trainable_variables`.

    Raises:
        ValueError: if `layer_names` is a string or empty, names a layer that is
            not in `model`, or names a layer with no trainable weights.

    Reference:
        Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the
        Effectiveness of MAML", ICLR 2020 (ANIL).

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="body"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> keras_transfer.ops.adapted_weight_indices(model)
    [0, 1, 2, 3]
    >>> keras_transfer.ops.adapted_weight_indices(model, ["head"])
    [2, 3]
    """
    variables = model.trainable_variables
    if layer_names is None:
        return list(range(len(variables)))
    if isinstance(layer_names, str) or not layer_names:
        raise ValueError(
            f"`adapt_layers` must be None or a non-empty list of layer names. Received: adapt_layers={layer_names!r}"
        )
    by_name = {layer.name: layer for layer in iter_layers(model)}
    position = {id(v): i for i, v in enumerate(variables)}
    indices = []
    for name in layer_names:
        if name not in by_name:
            raise ValueError(
                f"`adapt_layers` must name layers of the model. Received: {name!r}, available: {sorted(by_name)}"
            )
        owned = [position[id(v)] for v in by_name[name].trainable_weights if id(v) in position]
        if not owned:
            raise ValueError(
                f"`adapt_layers` must name layers with trainable weights. Received: {name!r}, which has none."
            )
        indices.extend(owned)
    return sorted(set(indices))


def inner_rates_at_step(rates, step=None, bounds=None):
    """The learned inner learning rates used at one inner step.

    Args:
        rates: list of tensors. Meta-SGD (Li et al., 2017): one rate per weight entry,
            shaped like the weight. MAML++ (Antoniou et al., 2019): one rate per
            weight tensor and step, shaped `[steps]`.
        step: None for Meta-SGD rates (the same at every step); the inner step for
            MAML++ rates (steps beyond the learned ones use the last rate).
        bounds: None or `(low, high)`: the rates are clipped to that range.

    Returns:
        a list of tensors, one per adapted weight (the `learning_rates` of
        `maml_inner_update`).

    Reference:
        Li et al., "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning",
        arXiv:1707.09835, 2017; Antoniou et al., "How to train your MAML",
        ICLR 2019.

    Example:

    >>> rates = [np.array([0.1, 0.05], "float32"), np.array([0.2, 0.01], "float32")]
    >>> [round(float(r), 3) for r in keras_transfer.ops.inner_rates_at_step(rates, step=1)]
    [0.05, 0.01]
    >>> at_5 = keras_transfer.ops.inner_rates_at_step(rates, step=5, bounds=(0.0, 0.02))
    >>> [round(float(r), 3) for r in at_5]
    [0.02, 0.01]
    """
    if step is not None:
        rates = [r[min(step, r.shape[0] - 1)] for r in rates]
    if bounds is not None:
        low, high = bounds
        rates = [ops.clip(r, low, high) for r in rates]
    return list(rates)


# -------------------------------------------------------------- BatchNorm
def moving_statistic_to_batch(moving_before, moving_after, momentum):
    """Solves a moving-average update `after = m * before + (1 - m) * batch` for `batch`.

    Args:
        moving_before: the moving statistic before a training-mode pass.
        moving_after: the same statistic after it.
        momentum: m, below 1.

    Returns:
        the batch statistic of that pass.
    """
    return (moving_after - momentum * moving_before) / (1.0 - momentum)


def batch_norm_statistics(model, trainable_values, non_trainable_values, x):
    """The non-trainable values of `model` with BatchNorm statistics taken from `x`.

    One training-mode pass of `model` (with `trainable_values`) on `x`; every
    `BatchNormalization` whose momentum is below 1 gets the batch mean and (biased)
    variance of its inputs as moving mean and variance, so the model normalises
    single examples the way it normalised the batch `x` (e.g. a task's support set
    after adaptation).

    Args:
        model: the Keras model.
        trainable_values: tensors of `model.trainable_variables` (e.g. fast weights).
        non_trainable_values: tensors of `model.non_trainable_variables`.
        x: the batch.

    Returns:
        a list like `non_trainable_values`; entries other than BatchNorm moving
        statistics are returned unchanged.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
    >>> x = np.array([[0.0, 1.0], [2.0, 5.0]], "float32")
    >>> mean, variance = keras_transfer.ops.batch_norm_statistics(
    ...     model, [v.value for v in model.trainable_variables],
    ...     [v.value for v in model.non_trainable_variables], x)
    >>> np.round(np.asarray(mean), 4), np.round(np.asarray(variance), 4)
    (array([1., 3.], dtype=float32), array([1., 4.], dtype=float32))
    """
    _, updated = model.stateless_call(trainable_values, non_trainable_values, x, **training_kwargs(model, True))
    momenta = {}
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum < 1:
            momenta[id(layer.moving_mean)] = layer.momentum
            momenta[id(layer.moving_variance)] = layer.momentum
    values = list(non_trainable_values)
    for j, v in enumerate(model.non_trainable_variables):
        if id(v) in momenta:
            values[j] = moving_statistic_to_batch(non_trainable_values[j], updated[j], momenta[id(v)])
    return values
