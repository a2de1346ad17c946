"""Visual prompt tokens in a transformer's token sequence: insert, remove, replace, initialise.

The sequence edits of visual prompt tuning (VPT): `[x_cls, E]` becomes
`[x_cls, P, E]` before the first encoder layer (`insert_prompts`); the deep
variant swaps the prompt outputs of one layer for the next layer's fresh prompts
(`replace_prompts`); `remove_prompts` drops them again.
"""

import math

from keras import ops

from keras_transfer.utils import validation


def _check_position(insert_at):
    return validation.check_non_negative_int(
        "insert_at", insert_at, "Pass the number of leading tokens kept before the prompts (1: the class token)."
    )


def _check_tokens(tokens, insert_at, extra=0):
    if len(tokens.shape) != 3:
        raise ValueError(
            f"`tokens` must be a (batch, length, dim) token sequence. Received: tokens with shape {tuple(tokens.shape)}"
        )
    length = tokens.shape[1]
    if length is not None and insert_at + extra > length:
        raise ValueError(
            f"`insert_at` must leave room in the sequence: insert_at + prompts <= length. Received: "
            f"insert_at={insert_at} with {extra} prompt positions and a sequence of {length} tokens"
        )


def insert_prompts(tokens, prompts, insert_at=1):
    """Inserts the same learned prompt tokens into every sequence of a batch.

    `[t_0 .. t_{k-1}, t_k ..] -> [t_0 .. t_{k-1}, p_1 .. p_P, t_k ..]` with `k = insert_at`.

    Args:
        tokens: `(batch, length, dim)` token sequence (e.g. `[x_cls, E]` of a ViT).
        prompts: `(num_prompts, dim)` prompt tokens, shared by the batch.
        insert_at: how many leading tokens stay before the prompts (1: after the class token).

    Returns:
        `(batch, length + num_prompts, dim)`, in the dtype of `tokens`.

    Raises:
        ValueError: if the shapes do not fit or `insert_at` exceeds the length.

    Reference:
        Jia et al., "Visual Prompt Tuning", ECCV 2022 (eq. 4: `[x_1, Z_1, E_1] = L_1([x_0, P, E_0])`).

    Example:

    >>> tokens = np.zeros((2, 3, 4), "float32")
    >>> prompts = np.ones((2, 4), "float32")
    >>> out = keras_transfer.ops.insert_prompts(tokens, prompts)
    >>> tuple(out.shape), keras.ops.convert_to_numpy(out)[0, :, 0].tolist()
    ((2, 5, 4), [0.0, 1.0, 1.0, 0.0, 0.0])
    """
    insert_at = _check_position(insert_at)
    tokens = ops.convert_to_tensor(tokens)
    prompts = ops.cast(ops.convert_to_tensor(prompts), tokens.dtype)
    _check_tokens(tokens, insert_at)
    if len(prompts.shape) != 2 or prompts.shape[-1] != tokens.shape[-1]:
        raise ValueError(
            "`prompts` must be a (num_prompts, dim) matrix with the tokens' dim. "
            f"Received: prompts with shape {tuple(prompts.shape)} for tokens of shape {tuple(tokens.shape)}"
        )
    batch = ops.shape(tokens)[0]
    tiled = ops.broadcast_to(ops.expand_dims(prompts, 0), (batch, prompts.shape[0], prompts.shape[1]))
    return ops.concatenate([tokens[:, :insert_at], tiled, tokens[:, insert_at:]], axis=1)


def remove_prompts(tokens, num_prompts, insert_at=1):
    """Drops the `num_prompts` positions after the first `insert_at` tokens.

    The inverse of `insert_prompts` on the sequence layout.

    Args:
        tokens: `(batch, length, dim)` token sequence holding prompts.
        num_prompts: how many prompt positions to drop.
        insert_at: where the prompts start.

    Returns:
        `(batch, length - num_prompts, dim)`.

    Raises:
        ValueError: if `num_prompts` is not positive or the prompts do not fit in the sequence.

    Reference:
        Jia et al., "Visual Prompt Tuning", ECCV 2022 (VPT-deep discards each layer's prompt outputs).

    Example:

    >>> tokens = np.arange(5, dtype="float32").reshape(1, 5, 1)
    >>> keras.ops.convert_to_numpy(keras_transfer.ops.remove_prompts(tokens, 2))[0, :, 0].tolist()
    [0.0, 3.0, 4.0]
    """
    num_prompts = validation.check_positive_int("num_prompts", num_prompts, "Pass e.g. num_prompts=10.")
    insert_at = _check_position(insert_at)
    tokens = ops.convert_to_tensor(tokens)
    _check_tokens(tokens, insert_at, num_prompts)
    return ops.concatenate([tokens[:, :insert_at], tokens[:, insert_at + num_prompts :]], axis=1)


def replace_prompts(tokens, prompts, insert_at=1):
    """Swaps the prompt positions of `tokens` for new prompts (VPT-deep, between two layers).

    Args:
        tokens: `(batch, length, dim)` output of a layer whose input held `num_prompts` prompts.
        prompts: `(num_prompts, dim)` the next layer's prompts.
        insert_at: where the prompts start.

    Returns:
        `(batch, length, dim)`: `tokens` with positions `[insert_at, insert_at + num_prompts)` replaced.

    Raises:
        ValueError: as `insert_prompts` and `remove_prompts`.

    Reference:
        Jia et al., "Visual Prompt Tuning", ECCV 2022 (eq. 6: `[x_i, _, E_i] = L_i([x_{i-1}, P_{i-1}, E_{i-1}])`).

    Example:

    >>> tokens = np.zeros((1, 4, 2), "float32")
    >>> out = keras_transfer.ops.replace_prompts(tokens, np.ones((2, 2), "float32"))
    >>> keras.ops.convert_to_numpy(out)[0, :, 0].tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    prompts = ops.convert_to_tensor(prompts)
    if len(prompts.shape) != 2:
        raise ValueError(
            f"`prompts` must be a (num_prompts, dim) matrix. Received: prompts with shape {tuple(prompts.shape)}"
        )
    return insert_prompts(remove_prompts(tokens, prompts.shape[0], insert_at), prompts, insert_at)


def prompt_init_limit(hidden_dim, patch_dim=None):
    """The bound `a` of VPT's uniform prompt initialisation `U(-a, a)`.

    Xavier-uniform over the patch embedding's fan-in and the hidden width:
    `a = sqrt(6 / (patch_dim + hidden_dim))`, with `patch_dim` the flattened patch size
    `patch_h * patch_w * channels` (the reference implementation's
    `sqrt(6 / (3 * patch * patch + dim))` for RGB).

    Args:
        hidden_dim: the token width `D`.
        patch_dim: the flattened patch size (default: `hidden_dim`, for token sequences without patches).

    Returns:
        A positive float.

    Raises:
        ValueError: if a size is not a positive integer.

    Reference:
        Jia et al., "Visual Prompt Tuning", ECCV 2022 (public code, `vit_prompt`: the prompts'
        uniform initialisation).

    Example:

    >>> round(keras_transfer.ops.prompt_init_limit(768, patch_dim=16 * 16 * 3), 4)  # ViT-B/16
    0.0625
    """
    hidden_dim = validation.check_positive_int("hidden_dim", hidden_dim)
    patch_dim = hidden_dim if patch_dim is None else validation.check_positive_int("patch_dim", patch_dim)
    return math.sqrt(6.0 / (patch_dim + hidden_dim))
