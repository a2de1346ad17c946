"""Masked imputation: hide part of the input and predict it (a cloze task)."""

import keras
from keras import ops

from keras_transfer.models._reconstruction import ReconstructionPretext
from keras_transfer.utils.validation import check_fraction
from keras_transfer.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_transfer")
class MaskedImputation(ReconstructionPretext):
    """Hides a random share `mask_rate` of the input and regresses the hidden part only.

    Images `(B, H, W, C)` are masked by square patches of `patch_size` pixels (all
    channels of a patch together); any other input (vectors, sequences) entry by
    entry. Hidden entries are set to `fill_value` (in [0, 1] units of
    `value_range`); the loss is the MSE over the hidden entries only (float32).

    `call(x)` returns the encoder's features; `reconstruct(x)` the decoder's output.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`.
        decoder: features -> input shape, or None for an MLP.
        mask_rate: share of patches/entries hidden, in (0, 1).
        patch_size: patch side for image inputs (must divide H and W).
        fill_value: value written into the hidden entries, in [0, 1] units.
        decoder_hidden_dim: hidden units of the default MLP decoder.
        value_range: range of the raw inputs, e.g. (0, 255).
        seed: non-negative int; the mask of a step is a function of (seed, optimizer
            step), so an interrupted or reloaded run resumes it exactly (None: drawn from
            Python's `random` and stored in the config). See `ReconstructionPretext` for
            distributed training.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the decoder is not a layer (or
            cannot be defaulted), `mask_rate` lies outside (0, 1), `patch_size` is not a
            positive integer dividing the image height and width, or `value_range` or
            `seed` is invalid.

    Reference:
        Pathak et al., "Context Encoders: Feature Learning by Inpainting", CVPR 2016;
        Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for
        Language Understanding", NAACL 2019 (the masked-token objective).

    Example:

    >>> encoder = keras.Sequential([
    ...     keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    >>> model = keras_transfer.models.MaskedImputation(
    ...     encoder, mask_rate=0.5, patch_size=2, decoder_hidden_dim=8, seed=0)
    >>> tuple(model(np.zeros((2, 4, 4, 1))).shape)  # the encoder's features
    (2, 3)
    >>> tuple(model.reconstruct(np.zeros((2, 4, 4, 1))).shape)
    (2, 4, 4, 1)
    """

    def __init__(
        self,
        encoder,
        decoder=None,
        mask_rate=0.5,
        patch_size=2,
        fill_value=0.0,
        decoder_hidden_dim=128,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        super().__init__(encoder, decoder, decoder_hidden_dim, value_range, seed, **kwargs)
        self.mask_rate = check_fraction("mask_rate", mask_rate, inclusive_low=False)
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.fill_value = float(fill_value)
        shape = tuple(encoder.inputs[0].shape)
        if len(shape) == 4 and None not in shape[1:3]:
            if shape[1] % self.patch_size or shape[2] % self.patch_size:
                raise ValueError(
                    f"`patch_size` must divide the image height and width. Received: patch_size="
                    f"{patch_size} for inputs of shape {shape}"
                )

    def _mask(self, x01, seed=None):
        """1.0 where hidden."""
        if len(x01.shape) == 4:
            p = self.patch_size
            grid = self._random_rows(x01, (x01.shape[1] // p, x01.shape[2] // p, 1), seed)
            hidden = ops.cast(grid < self.mask_rate, x01.dtype)
            hidden = ops.repeat(ops.repeat(hidden, p, axis=1), p, axis=2)
            return ops.broadcast_to(hidden, ops.shape(x01))
        return ops.cast(self._random_rows(x01, ops.shape(x01)[1:], seed) < self.mask_rate, x01.dtype)

    def _corrupt(self, x01, seed=None):
        x01 = ops.convert_to_tensor(x01)
        hidden = self._mask(x01, seed)
        return x01 * (1.0 - hidden) + self.fill_value * hidden, hidden

    def get_config(self):
        config = super().get_config()
        config.update({"mask_rate": self.mask_rate, "patch_size": self.patch_size, "fill_value": self.fill_value})
        return config
