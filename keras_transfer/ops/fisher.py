"""The diagonal of a classifier's Fisher information: the weight importances of EWC."""

import numpy as np
import tensorflow as tf

from keras_transfer.utils import validation


def _is_softmax(model):
    activation = getattr(model.layers[-1], "activation", None) if getattr(model, "layers", None) else None
    return getattr(activation, "__name__", None) == "softmax"


def _labels(y, n, num_classes):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        y = np.argmax(y, axis=-1)  # one-hot labels
    y = validation.check_labels(y, num_classes, "y").astype("int32")
    if len(y) != n:
        raise ValueError(f"`y` must hold one label per example of `x` ({n}). Received: y with {len(y)} labels")
    return y


def _batch_fisher(model, variables, from_logits, x, y):
    """The sums over the batch of the squared per-example gradients of log p (labels `y`, or
    every class weighted by its probability when `y` is None)."""
    with tf.GradientTape(persistent=True) as tape:
        outputs = tf.cast(model(x, training=False), "float32")
        log_p = tf.nn.log_softmax(outputs) if from_logits else tf.math.log(tf.maximum(outputs, 1e-30))
        if y is not None:
            picked = [(tf.gather(log_p, y, axis=1, batch_dims=1), None)]
        else:
            probabilities = tf.stop_gradient(tf.exp(log_p))
            picked = [(log_p[:, c], probabilities[:, c]) for c in range(log_p.shape[-1])]
    totals = [tf.zeros(v.shape, "float32") for v in variables]
    for log_likelihood, weight in picked:
        # Per-example gradients (one row per example), vectorised by pfor.
        jacobians = tape.jacobian(log_likelihood, variables, experimental_use_pfor=True)
        for i, (jacobian, variable) in enumerate(zip(jacobians, variables)):
            if jacobian is None:
                raise ValueError(
                    "`variables` must be variables the model's output depends on. Received: variable "
                    f"{variable.path!r}, which gets no gradient. Pass a subset of model.trainable_variables."
                )
            squared = tf.square(tf.cast(jacobian, "float32"))
            if weight is not None:
                squared = squared * tf.reshape(weight, (-1,) + (1,) * len(variable.shape))
            totals[i] = totals[i] + tf.reduce_sum(squared, axis=0)
    del tape
    return totals


def diagonal_fisher(model, x, y=None, batch_size=32, from_logits=None, variables=None):
    """The diagonal of a classifier's Fisher information, one array per variable (EWC's importances).

    `F_i = 1/n sum_n (d log p(y_n | x_n) / d w_i)^2`: per-example gradients squared,
    then averaged (not the square of a batch gradient). With labels `y` this is the
    *empirical* Fisher (gradients of the log-likelihood of the observed labels); with
    `y=None` it is the *expected* (true) Fisher, the expectation over the model's own
    predictive distribution taken exactly: `sum_c p(c | x_n) (d log p(c | x_n) / d w_i)^2`
    (one backward pass per class, no sampling). The model runs in inference mode
    (dropout off, BatchNorm on its moving statistics), so examples do not interact.
    Per-example gradients come from `tf.GradientTape.jacobian` (vectorised with pfor),
    one compiled call per batch; sums are accumulated in float64.

    Args:
        model: a classifier `x -> (batch, num_classes)` (logits or softmax
            probabilities), e.g. a `build_classifier` model trained on the source task.
        x: inputs (an array, or a structure of arrays the model takes).
        y: integer class ids (or one-hot rows), or None for the expected Fisher.
        batch_size: examples per compiled call.
        from_logits: whether the outputs are logits; None: probabilities when the
            last layer has a softmax activation, logits otherwise.
        variables: the variables to score, default `model.trainable_variables`
            (e.g. `keras_transfer.recipes.feature_extractor(model).trainable_variables`
            for the backbone only, as `AnchoredFineTuning` anchors it).

    Returns:
        A list of float32 NumPy arrays, one per variable in `variables` (same order
        and shapes), all non-negative.

    Raises:
        ValueError: if `batch_size` is not a positive integer, `x` is empty or not finite, the model
            outputs fewer than 2 classes, `y` is not one class id per example, or a
            variable gets no gradient from the output.

    Reference:
        Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks",
        PNAS 2017; Kunstner, Balles & Hennig, "Limitations of the empirical Fisher
        approximation for natural gradient descent", NeurIPS 2019.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    >>> model.set_weights([np.zeros((2, 3)), np.zeros(3)])
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> fisher = keras_transfer.ops.diagonal_fisher(model, x, np.array([0, 1]))
    >>> [f.shape for f in fisher]
    [(2, 3), (3,)]
    >>> [round(float(f), 4) for f in fisher[1]]  # bias: mean of (onehot - 1/3)^2
    [0.2778, 0.2778, 0.1111]
    """
    batch_size = validation.check_positive_int("batch_size", batch_size)
    variables = list(model.trainable_variables if variables is None else variables)
    n = len(tf.nest.flatten(x)[0])
    if n == 0:
        raise ValueError("`x` must contain at least one example. Received: an empty x.")
    x = tf.nest.map_structure(lambda a: tf.convert_to_tensor(validation.check_finite(a, "x")), x)
    first = model(tf.nest.map_structure(lambda a: a[:1], x), training=False)
    num_classes = int(first.shape[-1])
    if len(first.shape) != 2 or num_classes < 2:
        raise ValueError(
            "`model` must output class scores of shape (batch, num_classes >= 2). Received: a model with "
            f"output shape {tuple(first.shape)}. Use a softmax or logits head over the classes."
        )
    from_logits = not _is_softmax(model) if from_logits is None else bool(from_logits)
    labels = None if y is None else tf.constant(_labels(y, n, num_classes))
    step = tf.function(lambda xb, yb: _batch_fisher(model, variables, from_logits, xb, yb), reduce_retracing=True)
    totals = [np.zeros(v.shape, "float64") for v in variables]
    for start in range(0, n, batch_size):
        xb = tf.nest.map_structure(lambda a: a[start : start + batch_size], x)
        yb = None if labels is None else labels[start : start + batch_size]
        for total, part in zip(totals, step(xb, yb)):
            total += part.numpy()
    return [(total / n).astype("float32") for total in totals]
