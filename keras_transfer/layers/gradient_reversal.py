"""The gradient reversal op and layer of domain-adversarial training (Ganin et al., 2016)."""

import numbers

import keras
from keras import ops


def _check_factor(factor, name="factor"):
    """Checks a Python number factor; tensors and variables pass unchecked (traced values)."""
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
        if hasattr(factor, "dtype") and hasattr(factor, "shape"):
            return factor
        raise ValueError(
            f"`{name}` must be a non-negative number (the gradient is multiplied by -{name}). "
            f"Received: {name}={factor!r}"
        )
    factor = float(factor)
    if not factor >= 0 or factor == float("inf"):
        raise ValueError(
            f"`{name}` must be a non-negative finite number (the gradient is multiplied by "
            f"-{name}; use {name}=0 to block the gradient, never a negative value, which would "
            f"stop reversing it). Received: {name}={factor!r}"
        )
    return factor


def reverse_gradient(x, factor=1.0):
    """Identity in the forward pass; multiplies the gradient by `-factor` in the backward pass.

    The gradient reversal "layer" of domain-adversarial training: a feature
    extractor placed before it *maximises* the loss of whatever comes after it
    (the domain classifier), while that classifier itself minimises it. This is
    the function; `keras_transfer.layers.GradientReversal` is the layer.

    Args:
        x: a tensor.
        factor: a non-negative Python number, or a scalar tensor / variable (so a
            schedule can change it without retracing). `0` blocks the gradient.

    Returns:
        A tensor equal to `x`, whose gradient is `-factor` times the upstream one.

    Raises:
        ValueError: if `factor` is a negative, infinite or non-numeric Python value.

    Reference:
        Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
        ICML 2015.

    Example:

    >>> import tensorflow as tf
    >>> x = tf.constant([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = keras_transfer.layers.reverse_gradient(x, factor=0.5)
    >>> y.numpy()
    array([1., 2.], dtype=float32)
    >>> tape.gradient(y, x).numpy()
    array([-0.5, -0.5], dtype=float32)
    """
    factor = _check_factor(factor)
    x = ops.convert_to_tensor(x)
    # keras.ops has no gradient-reversal op: written by hand with ops.custom_gradient
    # (exact identity forward, unlike the stop_gradient(x) + f * (x - stop_gradient(x)) trick).
    factor = ops.convert_to_tensor(factor)

    @ops.custom_gradient
    def _reverse(inputs, scale):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return (
                ops.negative(upstream) * ops.cast(scale, upstream.dtype),
                ops.zeros_like(scale),
            )

        return ops.copy(inputs), grad

    return _reverse(x, factor)


@keras.saving.register_keras_serializable(package="keras_transfer")
class GradientReversal(keras.layers.Layer):
    """Gradient reversal layer: identity forward, gradient times `-factor` backward.

    Placed between a feature extractor and a domain classifier, it makes the
    features maximise the domain classifier's loss while the classifier
    minimises it (domain-adversarial training, `keras_transfer.models.DANN`).
    The factor is stored in a non-trainable weight, so a callback such as
    `keras_transfer.callbacks.GradientReversalSchedule` can change it during `fit`
    without retracing the compiled train step (a Python float would be baked into
    the traced graph). It is saved with the model (`.keras` and `export()`).

    Args:
        factor: non-negative float, the scale of the reversed gradient (λ in the
            paper). `0` makes the layer a gradient block.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if `factor` is negative, infinite or not a number.

    Reference:
        Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
        ICML 2015; Ganin et al., "Domain-Adversarial Training of Neural
        Networks", JMLR 2016.

    Example:

    >>> features = keras.Input((16,))
    >>> reversed_features = keras_transfer.layers.GradientReversal(factor=0.3)(features)
    >>> domain_logit = keras.layers.Dense(1)(reversed_features)
    >>> tuple(domain_logit.shape)
    (None, 1)
    >>> layer = keras_transfer.layers.GradientReversal(factor=0.3)
    >>> layer(np.array([[1.0, -2.0]], "float32")).numpy()
    array([[ 1., -2.]], dtype=float32)
    >>> layer.factor = 0.5  # what GradientReversalSchedule does during fit
    >>> layer.factor
    0.5
    """

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self._initial_factor = _check_factor(factor)
        self.supports_masking = True
        self._factor = None

    def build(self, input_shape):
        self._factor = self.add_weight(
            name="factor",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self._initial_factor),
            trainable=False,
            autocast=False,
        )
        self.built = True

    @property
    def factor(self):
        """The current factor as a Python float."""
        if self._factor is None:
            return self._initial_factor
        return float(ops.convert_to_numpy(self._factor.value))

    @factor.setter
    def factor(self, value):
        value = _check_factor(value)
        if self._factor is None:
            self._initial_factor = value
        else:
            self._factor.assign(value)

    def call(self, inputs):
        return reverse_gradient(inputs, self._factor.value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor})
        return config
