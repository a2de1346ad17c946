"""A pre-LayerNorm ViT encoder block on Keras core layers."""

import keras

from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class ViTBlock(keras.layers.Layer):
    """One ViT encoder block: `x + MHA(LN(x))`, then `+ MLP(LN(.))` with a GELU MLP.

    The block of keras-hub's `ViTEncoder`, with the same weights in the same order
    (`ln_1`, `mha`, `ln_2`, `mlp_dense_1`, `mlp_dense_2`), on Keras core layers; its
    config reloads from a `.keras` file and a frozen block stays frozen there (keras-hub's
    `ViTEncoderBlock` config does not reload on its own). With `PatchEmbedding` it makes
    a small ViT without keras-hub.

    Args:
        num_heads: attention heads; must divide the token width.
        mlp_dim: hidden width of the MLP.
        dropout: dropout after the attention and in the MLP, in [0, 1).
        attention_dropout: dropout on the attention weights, in [0, 1).
        layer_norm_epsilon: the LayerNorms' epsilon.
        use_mha_bias: biases in the attention projections.
        use_mlp_bias: biases in the MLP.
        **kwargs: base `Layer` arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        tokens: `(batch, length, dim)` token sequence.
        training: whether dropout is applied.

    Returns:
        `(batch, length, dim)`.

    Raises:
        ValueError: if an argument is invalid; when built, if the input is not a
            `(batch, length, dim)` sequence whose dim `num_heads` divides.

    Reference:
        Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
        Recognition at Scale", ICLR 2021 (eqs. 2-3).

    Example:

    >>> block = keras_transfer.layers.ViTBlock(num_heads=2, mlp_dim=16)
    >>> tuple(block(np.zeros((2, 5, 8), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        num_heads,
        mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        layer_norm_epsilon=1e-6,
        use_mha_bias=True,
        use_mlp_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = validation.check_positive_int("num_heads", num_heads)
        self.mlp_dim = validation.check_positive_int("mlp_dim", mlp_dim)
        self.dropout = validation.check_fraction("dropout", dropout)
        self.attention_dropout = validation.check_fraction("attention_dropout", attention_dropout)
        self.layer_norm_epsilon = validation.check_positive_float("layer_norm_epsilon", layer_norm_epsilon)
        for name, value in (("use_mha_bias", use_mha_bias), ("use_mlp_bias", use_mlp_bias)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
        self.use_mha_bias = use_mha_bias
        self.use_mlp_bias = use_mlp_bias

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None or input_shape[-1] % self.num_heads:
            raise ValueError(
                "`ViTBlock` needs a (batch, length, dim) sequence whose dim `num_heads` divides. "
                f"Received: input shape {tuple(input_shape)}, num_heads={self.num_heads}"
            )
        dim = int(input_shape[-1])
        policy = self.dtype_policy
        self.ln_1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="ln_1")
        self.ln_1.build(input_shape)
        self.mha = keras.layers.MultiHeadAttention(
            self.num_heads,
            dim // self.num_heads,
            use_bias=self.use_mha_bias,
            dropout=self.attention_dropout,
            dtype=policy,
            name="mha",
        )
        self.mha.build(input_shape, input_shape)
        self.ln_2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=policy, name="ln_2")
        self.ln_2.build(input_shape)
        self.mlp_dense_1 = keras.layers.Dense(
            self.mlp_dim, activation="gelu", use_bias=self.use_mlp_bias, dtype=policy, name="mlp_dense_1"
        )
        self.mlp_dense_1.build(input_shape)
        self.mlp_dense_2 = keras.layers.Dense(dim, use_bias=self.use_mlp_bias, dtype=policy, name="mlp_dense_2")
        self.mlp_dense_2.build((None, None, self.mlp_dim))
        self.drop = keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
        for layer in (self.ln_1, self.mha, self.ln_2, self.mlp_dense_1, self.mlp_dense_2):
            layer.trainable = self.trainable  # a frozen block (e.g. reloaded from `.keras`) stays frozen

    def call(self, tokens, training=None):
        x = self.ln_1(tokens)
        x = self.drop(self.mha(x, x, training=training), training=training) + tokens
        y = self.mlp_dense_1(self.ln_2(x))
        y = self.drop(self.mlp_dense_2(self.drop(y, training=training)), training=training)
        return x + y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "use_mha_bias": self.use_mha_bias,
                "use_mlp_bias": self.use_mlp_bias,
            }
        )
        return config
