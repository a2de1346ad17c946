"""DINO's projection head: MLP -> L2-normalised bottleneck -> weight-normalised prototypes."""

import keras
from keras import ops

from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.ops.numerics import l2_normalize
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class DINOHead(keras.layers.Layer):
    """The head of `keras_transfer.models.DINO` (Caron et al., 2021, the official `DINOHead`).

    `num_layers` Dense layers (GELU between them, after a BatchNormalization with
    `use_bn`; the hidden ones `hidden_dim` wide, the last `bottleneck_dim`), the
    bottleneck L2-normalised, then a weight-normalised linear layer without bias onto
    `out_dim` prototypes whose gain is fixed to 1 (the paper's `norm_last_layer=True`):

        z = mlp(x) / ||mlp(x)||,    logits_k = z . v_k / ||v_k||,

    so every logit is a cosine in [-1, 1] and the gradient flows through the
    normalisation of `v_k` (a reparametrisation, not a constraint applied after the
    step). The Dense kernels start from a truncated normal of std 0.02 and zero biases,
    as in the official code. The logits come out in float32 (float64 for a float64
    layer) whatever the dtype policy (DINO divides them by a teacher temperature of
    0.04, which float16 rounding would blur).

    Args:
        out_dim: positive int K, the number of prototypes (65536 in the paper).
        hidden_dim: positive int, the width of the hidden Dense layers (2048).
        bottleneck_dim: positive int, the size of the normalised bottleneck (256).
        num_layers: positive int, the number of Dense layers before the
            normalisation (3; 1 maps the features straight to the bottleneck).
        activation: the non-linearity between the Dense layers ("gelu").
        use_bn: BatchNormalization after each hidden Dense layer (the official code's
            `use_bn_in_head`; off by default).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, features)` representations.
        training: whether the BatchNormalization layers (with `use_bn`) use batch statistics.

    Returns:
        `(batch, out_dim)` float32 logits (float64 for a float64 layer), each in [-1, 1].

    Raises:
        ValueError: if a size or `num_layers` is not a positive int.

    Reference:
        Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
        ICCV 2021.

    Example:

    >>> head = keras_transfer.layers.DINOHead(out_dim=16, hidden_dim=8, bottleneck_dim=4)
    >>> logits = head(np.random.default_rng(0).normal(size=(2, 6)).astype("float32"))
    >>> tuple(logits.shape), bool(np.all(np.abs(logits) <= 1.0))
    ((2, 16), True)
    """

    def __init__(
        self, out_dim, hidden_dim=2048, bottleneck_dim=256, num_layers=3, activation="gelu", use_bn=False, **kwargs
    ):
        super().__init__(**kwargs)
        fix = "Pass a positive size, e.g. out_dim=65536, hidden_dim=2048, bottleneck_dim=256 (the paper's)."
        self.out_dim = validation.check_positive_int("out_dim", out_dim, fix)
        self.hidden_dim = validation.check_positive_int("hidden_dim", hidden_dim, fix)
        self.bottleneck_dim = validation.check_positive_int("bottleneck_dim", bottleneck_dim, fix)
        self.num_layers = validation.check_positive_int("num_layers", num_layers, "The paper uses num_layers=3.")
        self.activation = keras.activations.get(activation)
        self.use_bn = bool(use_bn)
        sizes = [self.hidden_dim] * (self.num_layers - 1) + [self.bottleneck_dim]
        self.dense_layers = [
            keras.layers.Dense(
                size,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=self.dtype_policy,
                name=f"dense_{i}",
            )
            for i, size in enumerate(sizes)
        ]
        hidden_norms = self.num_layers - 1 if self.use_bn else 0
        self.norm_layers = [
            keras.layers.BatchNormalization(dtype=self.dtype_policy, name=f"bn_{i}") for i in range(hidden_norms)
        ]

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "`DINOHead` needs (batch, features) inputs with a known feature size. "
                f"Received: input_shape={input_shape}. Pool the encoder's output first."
            )
        shape = input_shape
        for i, layer in enumerate(self.dense_layers):
            layer.build(shape)
            shape = (shape[0], layer.units)
            if i < len(self.norm_layers):
                self.norm_layers[i].build(shape)
        self.prototypes = self.add_weight(
            name="prototypes", shape=(self.bottleneck_dim, self.out_dim), initializer="glorot_uniform"
        )
        self.built = True

    def call(self, inputs, training=None):
        h = inputs
        for i, layer in enumerate(self.dense_layers):
            h = layer(h)
            if i < len(self.norm_layers):
                h = self.norm_layers[i](h, training=training)
            if i < len(self.dense_layers) - 1:
                h = self.activation(h)
        dtype = compute_dtype(h)  # float32 (float64 for a float64 layer), also under mixed_float16
        z = l2_normalize(ops.cast(h, dtype))
        v = ops.cast(self.prototypes, dtype)
        v = v * ops.rsqrt(ops.maximum(ops.sum(ops.square(v), axis=0, keepdims=True), 1e-12))
        return ops.matmul(z, v)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.out_dim)

    def compute_output_spec(self, inputs):
        dtype = "float64" if self.compute_dtype == "float64" else "float32"
        return keras.KerasTensor((inputs.shape[0], self.out_dim), dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "out_dim": self.out_dim,
                "hidden_dim": self.hidden_dim,
                "bottleneck_dim": self.bottleneck_dim,
                "num_layers": self.num_layers,
                "activation": keras.activations.serialize(self.activation),
                "use_bn": self.use_bn,
            }
        )
        return config
