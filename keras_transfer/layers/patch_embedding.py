"""ViT's patch embedding: patches -> linear projection, class token, learned position embeddings."""

import keras
from keras import ops

from keras_transfer.utils import validation


def _pair(name, value):
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
    ):
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints. Received: {name}={value!r}")
    return tuple(pair)


@keras.saving.register_keras_serializable(package="keras_transfer")
class PatchEmbedding(keras.layers.Layer):
    """Images -> ViT token sequence `[x_cls, E]`: patch projection, class token, positions.

    Each non-overlapping `patch_size` patch is projected linearly (a strided
    `Conv2D`) to `hidden_dim`; a learned class token is prepended and a learned
    position embedding added to every token. The weights (class token, projection
    kernel and bias, position table) are laid out as keras-hub's
    `ViTPatchingAndEmbedding`, whose saved config does not reload on its own:
    `keras_transfer.recipes.add_visual_prompts` swaps it for this layer.

    Args:
        patch_size: int or (height, width) of the patches; must divide the image size.
        hidden_dim: positive int, the token width `D`.
        use_class_token: prepend a learned class token.
        use_patch_bias: a bias in the patch projection.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        images: `(batch, height, width, channels)` images (channels last).

    Returns:
        `(batch, 1 + patches, hidden_dim)` tokens (no class token: `patches` tokens).

    Raises:
        ValueError: if an argument is invalid; when built, if the image size is unknown
            or not a multiple of the patch size.

    Reference:
        Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
        Recognition at Scale", ICLR 2021 (eq. 1).

    Example:

    >>> embed = keras_transfer.layers.PatchEmbedding(patch_size=4, hidden_dim=8)
    >>> tuple(embed(np.zeros((2, 8, 8, 1), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(self, patch_size, hidden_dim, use_class_token=True, use_patch_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _pair("patch_size", patch_size)
        self.hidden_dim = validation.check_positive_int("hidden_dim", hidden_dim)
        for name, value in (("use_class_token", use_class_token), ("use_patch_bias", use_patch_bias)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
        self.use_class_token = use_class_token
        self.use_patch_bias = use_patch_bias
        self.projection = keras.layers.Conv2D(
            self.hidden_dim,
            self.patch_size,
            strides=self.patch_size,
            use_bias=use_patch_bias,
            dtype=self.dtype_policy,
            name="patch_embedding",
        )

    def _num_tokens(self, input_shape):
        if len(input_shape) != 4 or any(input_shape[i] is None for i in (1, 2)):
            raise ValueError(
                "`PatchEmbedding` needs (batch, height, width, channels) images of a known size. "
                f"Received: input shape {tuple(input_shape)}"
            )
        if input_shape[1] % self.patch_size[0] or input_shape[2] % self.patch_size[1]:
            raise ValueError(
                f"`patch_size` must divide the image size. Received: patch_size={self.patch_size} for "
                f"images of {tuple(input_shape[1:3])}"
            )
        patches = (input_shape[1] // self.patch_size[0]) * (input_shape[2] // self.patch_size[1])
        return patches + int(self.use_class_token)

    def build(self, input_shape):
        num_tokens = self._num_tokens(input_shape)
        self.class_token = None
        if self.use_class_token:
            self.class_token = self.add_weight(
                shape=(1, 1, self.hidden_dim), initializer="random_normal", name="class_token"
            )
        self.projection.build(input_shape)
        self.position_embedding = self.add_weight(
            shape=(num_tokens, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position_embedding",
        )
        self.projection.trainable = self.trainable  # a frozen layer (e.g. reloaded from `.keras`) stays frozen

    def call(self, images):
        patches = self.projection(images)
        shape = ops.shape(patches)
        tokens = ops.reshape(patches, (shape[0], -1, self.hidden_dim))
        if self.use_class_token:
            cls = ops.broadcast_to(ops.cast(self.class_token, tokens.dtype), (shape[0], 1, self.hidden_dim))
            tokens = ops.concatenate([cls, tokens], axis=1)
        return tokens + ops.cast(self.position_embedding, tokens.dtype)[None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._num_tokens(input_shape), self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim,
                "use_class_token": self.use_class_token,
                "use_patch_bias": self.use_patch_bias,
            }
        )
        return config
