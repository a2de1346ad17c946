"""Deep CORAL (Sun & Saenko, 2016): the distance between source and target feature covariances."""

import keras
from keras import ops

from keras_transfer.ops.numerics import static_batch_size


def feature_covariance(features):
    """Unbiased covariance of `(n, d)` features (rows are examples), computed in float32."""
    features = ops.cast(features, "float32")
    n = ops.cast(ops.shape(features)[0], "float32")
    centred = features - ops.mean(features, axis=0, keepdims=True)
    # max(n - 1, 1): a single row gives a zero covariance instead of NaN (checked statically below).
    return ops.matmul(ops.transpose(centred), centred) / ops.maximum(n - 1.0, 1.0)


def coral_loss(source_features, target_features):
    """`||C_s - C_t||_F^2 / (4 d^2)`, the CORAL loss between two feature batches.

    Args:
        source_features: `(n_s, ...)` features of source examples (flattened to `(n_s, d)`).
        target_features: `(n_t, ...)` features of target examples, same feature size `d`;
            `n_s` and `n_t` may differ.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: if a batch has no feature axis or fewer than 2 rows, or if the two
            feature sizes differ.

    Reference:
        Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation",
        ECCV 2016 Workshops.

    Example:

    >>> source = np.array([[0.0, 0.0], [2.0, 0.0]], "float32")  # variance 2 on feature 0
    >>> target = np.array([[0.0, 0.0], [0.0, 2.0]], "float32")  # variance 2 on feature 1
    >>> round(float(keras_transfer.losses.coral_loss(source, target)), 4)  # (4 + 4) / (4 * 2**2)
    0.5
    """
    source_features = ops.convert_to_tensor(source_features)
    target_features = ops.convert_to_tensor(target_features)
    for name, x in (("source_features", source_features), ("target_features", target_features)):
        if len(x.shape) < 2:
            raise ValueError(
                f"`{name}` must have a batch axis and at least one feature axis, shape (n, d). "
                f"Received: {name} with shape {tuple(x.shape)}"
            )
        rows = static_batch_size(x)
        if rows is not None and rows < 2:
            raise ValueError(
                f"`{name}` must hold at least 2 examples: a covariance needs two rows. "
                f"Received: {name} with shape {tuple(x.shape)}. Use a larger batch."
            )
    source_features = ops.reshape(source_features, (ops.shape(source_features)[0], -1))
    target_features = ops.reshape(target_features, (ops.shape(target_features)[0], -1))
    ds, dt = source_features.shape[-1], target_features.shape[-1]
    if ds is not None and dt is not None and ds != dt:
        raise ValueError(
            "`source_features` and `target_features` must have the same feature size. "
            f"Received: source_features with {ds} and target_features with {dt} features"
        )
    d = ops.cast(ops.shape(source_features)[-1], "float32")
    difference = feature_covariance(source_features) - feature_covariance(target_features)
    return ops.sum(ops.square(difference)) / (4.0 * d * d)


@keras.saving.register_keras_serializable(package="keras_transfer")
class CORALLoss(keras.losses.Loss):
    """The Deep CORAL loss as a `keras.losses.Loss`.

    Called as `loss(source_features, target_features)`: `y_true` holds the source
    features and `y_pred` the target features (the two batches may differ in size).
    See `coral_loss`. `keras_transfer.models.DeepCORAL` trains with it.

    Args:
        name: the loss name.
        reduction: as in `keras.losses.Loss` (the loss is already a scalar).
        dtype: as in `keras.losses.Loss`.

    Reference:
        Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation",
        ECCV 2016 Workshops.

    Example:

    >>> loss = keras_transfer.losses.CORALLoss()
    >>> source = np.array([[0.0, 0.0], [2.0, 0.0]], "float32")
    >>> target = np.array([[0.0, 0.0], [0.0, 2.0]], "float32")
    >>> round(float(loss(source, target)), 4)
    0.5
    """

    def __init__(self, name="coral_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return coral_loss(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}
