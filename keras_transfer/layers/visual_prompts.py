"""Learned visual prompt tokens for a transformer's token sequence (VPT)."""

import keras

from keras_transfer.ops import visual_prompts as prompt_ops
from keras_transfer.utils import validation

MODES = ("insert", "replace", "remove")


@keras.saving.register_keras_serializable(package="keras_transfer")
class VisualPrompts(keras.layers.Layer):
    """Inserts (or replaces, or removes) `num_prompts` learned tokens after the class token.

    VPT's prompts: "insert" turns `[x_cls, E]` into `[x_cls, P, E]` before the first
    encoder layer; "replace" puts this layer's fresh prompts where the previous
    layer's prompt outputs were (VPT-deep, before each later encoder layer); "remove"
    drops the prompt positions (no weights), e.g. after the last layer so that the
    model's output keeps its original length. The prompts get no position embedding.
    `keras_transfer.recipes.add_visual_prompts` places these layers in a ViT.

    Args:
        num_prompts: positive int `P`, the number of prompt tokens.
        mode: "insert", "replace" or "remove" (see above).
        insert_at: how many leading tokens stay before the prompts (1: after the class token).
        patch_dim: the flattened patch size (`patch_h * patch_w * channels`) of the
            initialisation `U(-a, a)`, `a = sqrt(6 / (patch_dim + dim))`; default: the token width.
        seed: seed of the initialisation (None: Keras's global seed generator).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        tokens: `(batch, length, dim)` token sequence.

    Returns:
        The sequence with `P` more tokens ("insert"), as many ("replace") or `P` fewer ("remove").

    Raises:
        ValueError: if an argument is invalid; when built, if the input is not a
            `(batch, length, dim)` sequence long enough.

    Reference:
        Jia et al., "Visual Prompt Tuning", ECCV 2022 (§3.2, VPT-shallow and VPT-deep).

    Example:

    >>> layer = keras_transfer.layers.VisualPrompts(3, patch_dim=48, seed=0)
    >>> tuple(layer(np.zeros((2, 5, 8), "float32")).shape)
    (2, 8, 8)
    >>> tuple(layer.prompts.shape)
    (3, 8)
    >>> remove = keras_transfer.layers.VisualPrompts(3, mode="remove")
    >>> tuple(remove(np.zeros((2, 8, 8), "float32")).shape), len(remove.weights)
    ((2, 5, 8), 0)
    """

    def __init__(self, num_prompts, mode="insert", insert_at=1, patch_dim=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_prompts = validation.check_positive_int("num_prompts", num_prompts, "Pass e.g. num_prompts=10.")
        self.mode = validation.check_one_of("mode", mode, MODES)
        self.insert_at = validation.check_non_negative_int(
            "insert_at", insert_at, "Pass the number of leading tokens kept before the prompts (1: the class token)."
        )
        self.patch_dim = None if patch_dim is None else validation.check_positive_int("patch_dim", patch_dim)
        if seed is not None:
            seed = validation.check_non_negative_int("seed", seed)
        self.seed = seed
        self.prompts = None

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`VisualPrompts` needs a (batch, length, dim) token sequence with a known dim. "
                f"Received: input shape {tuple(input_shape)}"
            )
        length = input_shape[1]
        extra = 0 if self.mode == "insert" else self.num_prompts
        if length is not None and self.insert_at + extra > length:
            raise ValueError(
                f"`insert_at` must leave room in the sequence: insert_at + prompts <= length. Received: "
                f"insert_at={self.insert_at}, num_prompts={self.num_prompts}, mode={self.mode!r} and a "
                f"sequence of {length} tokens"
            )
        if self.mode != "remove":
            limit = prompt_ops.prompt_init_limit(int(input_shape[-1]), self.patch_dim)
            self.prompts = self.add_weight(
                shape=(self.num_prompts, int(input_shape[-1])),
                initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
                name="prompts",
            )

    def call(self, tokens):
        if self.mode == "remove":
            return prompt_ops.remove_prompts(tokens, self.num_prompts, self.insert_at)
        prompts = keras.ops.cast(self.prompts, tokens.dtype)
        if self.mode == "insert":
            return prompt_ops.insert_prompts(tokens, prompts, self.insert_at)
        return prompt_ops.replace_prompts(tokens, prompts, self.insert_at)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        if length is not None and self.mode != "replace":
            length = length + self.num_prompts if self.mode == "insert" else length - self.num_prompts
        return (input_shape[0], length, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_prompts": self.num_prompts,
                "mode": self.mode,
                "insert_at": self.insert_at,
                "patch_dim": self.patch_dim,
                "seed": self.seed,
            }
        )
        return config
