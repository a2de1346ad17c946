"""Bottleneck (Houlsby) adapter: `y = x + W_up f(W_down LN(x))`, the identity at initialisation."""

import keras
from keras import ops

from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class BottleneckAdapter(keras.layers.Layer):
    """A shallow bottleneck MLP with a skip connection (Houlsby adapter).

    Acts on the last axis of an input of any rank >= 2 (tokens `(batch, seq, D)`,
    images `(batch, H, W, D)` or vectors `(batch, D)`):

        y = x + (f(LN(x) @ W_down + b_down) @ W_up + b_up) * scale

    `W_up` and `b_up` start at zero, so the adapter is the identity when it is
    inserted into a pretrained model. With a bottleneck of size `M` it adds
    `2 * D * M + D + M` parameters (plus `2 * D` with the layer norm).
    `keras_transfer.recipes.add_adapters` inserts it into a model and
    `keras_transfer.recipes.fold_adapters` removes it again for serving.

    Keras ships only LoRA; the bottleneck adapter is written by hand.

    Args:
        bottleneck_dim: positive int `M`, at most the feature size `D`.
        activation: the non-linearity between the two projections.
        use_layer_norm: apply a `LayerNormalization` to the adapter's input
            (inside the residual branch, so the identity at init is kept).
        scale: positive float multiplying the residual branch.
        down_initializer: initializer of the down-projection kernel.
        up_initializer: initializer of the up-projection kernel (zeros keeps
            the identity at initialisation).
        epsilon: layer-norm epsilon, positive.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if `bottleneck_dim` is not a positive int, or `scale` or
            `epsilon` is not positive; when built, if the input has rank < 2,
            an unknown last axis, or fewer features than `bottleneck_dim`.

    Reference:
        Houlsby et al., "Parameter-Efficient Transfer Learning for NLP",
        ICML 2019.

    Example:

    >>> adapter = keras_transfer.layers.BottleneckAdapter(bottleneck_dim=8)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 32)).astype("float32")
    >>> y = adapter(x)
    >>> tuple(y.shape)
    (2, 5, 32)
    >>> bool(np.allclose(y, x))  # the identity at initialisation
    True
    >>> adapter.count_params()  # 2 * 32 * 8 + 32 + 8
    552
    """

    def __init__(
        self,
        bottleneck_dim,
        activation="relu",
        use_layer_norm=False,
        scale=1.0,
        down_initializer="glorot_uniform",
        up_initializer="zeros",
        epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bottleneck_dim = validation.check_positive_int(
            "bottleneck_dim", bottleneck_dim, "Pass the adapter width M, e.g. bottleneck_dim=16."
        )
        self.activation = keras.activations.get(activation)
        self.use_layer_norm = bool(use_layer_norm)
        self.scale = validation.check_positive_float("scale", scale)
        self.down_initializer = keras.initializers.get(down_initializer)
        self.up_initializer = keras.initializers.get(up_initializer)
        self.epsilon = validation.check_positive_float("epsilon", epsilon)
        self.supports_masking = True

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(
                "`BottleneckAdapter` needs an input of rank >= 2 (batch, ..., features). "
                f"Received: input_shape={input_shape}. Add a batch axis or reshape the input."
            )
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                f"`BottleneckAdapter` needs a known last (feature) axis. Received: input_shape={input_shape}"
            )
        if self.bottleneck_dim > features:
            raise ValueError(
                f"`bottleneck_dim` must be at most the feature size {features}. "
                f"Received: bottleneck_dim={self.bottleneck_dim}. "
                "An adapter is a bottleneck: choose bottleneck_dim <= the input's last dimension."
            )
        self.features = features
        if self.use_layer_norm:
            self.layer_norm = keras.layers.LayerNormalization(
                epsilon=self.epsilon, dtype=self.dtype_policy, name="layer_norm"
            )
            self.layer_norm.build(input_shape)
        self.down_kernel = self.add_weight(
            name="down_kernel", shape=(features, self.bottleneck_dim), initializer=self.down_initializer
        )
        self.down_bias = self.add_weight(name="down_bias", shape=(self.bottleneck_dim,), initializer="zeros")
        self.up_kernel = self.add_weight(
            name="up_kernel", shape=(self.bottleneck_dim, features), initializer=self.up_initializer
        )
        self.up_bias = self.add_weight(name="up_bias", shape=(features,), initializer="zeros")
        self.built = True

    def call(self, inputs):
        h = self.layer_norm(inputs) if self.use_layer_norm else inputs
        h = ops.add(ops.matmul(h, self.down_kernel), self.down_bias)
        h = self.activation(h)
        h = ops.add(ops.matmul(h, self.up_kernel), self.up_bias)
        if self.scale != 1.0:
            h = ops.multiply(h, ops.cast(self.scale, h.dtype))
        return ops.add(inputs, ops.cast(h, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bottleneck_dim": self.bottleneck_dim,
                "activation": keras.activations.serialize(self.activation),
                "use_layer_norm": self.use_layer_norm,
                "scale": self.scale,
                "down_initializer": keras.initializers.serialize(self.down_initializer),
                "up_initializer": keras.initializers.serialize(self.up_initializer),
                "epsilon": self.epsilon,
            }
        )
        return config
