"""Denoising-autoencoder pre-training (Vincent et al., 2008)."""

import keras
from keras import ops

from keras_transfer.models._reconstruction import ReconstructionPretext
from keras_transfer.utils.validation import check_fraction
from keras_transfer.utils.validation import check_non_negative_float
from keras_transfer.utils.validation import check_one_of


@keras.saving.register_keras_serializable(package="keras_transfer")
class DenoisingAutoencoder(ReconstructionPretext):
    """Corrupts the input, and trains encoder + decoder to reconstruct the CLEAN input.

    Corruptions (in [0, 1] units of `value_range`): "gaussian" adds N(0, noise_stddev^2)
    noise; "masking" zeroes each entry with probability `mask_rate` (the masking noise of
    Vincent et al.). The loss is the MSE over ALL entries in [0, 1] units, float32.

    `call(x)` returns the encoder's features; `reconstruct(x)` the decoder's output.

    Args:
        encoder: a built Keras model mapping inputs to `(batch, features)`.
        decoder: features -> input shape, or None for an MLP (`decoder_hidden_dim` units).
        corruption: "gaussian" or "masking".
        noise_stddev: standard deviation of the Gaussian noise (>= 0).
        mask_rate: share of entries zeroed by "masking" noise, in [0, 1).
        decoder_hidden_dim: hidden units of the default MLP decoder.
        value_range: range of the raw inputs, e.g. (0, 255).
        seed: non-negative int; the noise of a step is a function of (seed, optimizer
            step), so an interrupted or reloaded run resumes it exactly (None: drawn from
            Python's `random`, which `keras.utils.set_random_seed` seeds, and stored in
            the config). See `ReconstructionPretext` for distributed training.
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: a batch of the encoder's inputs.
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if the encoder is not a built model, the decoder is not a layer (or
            cannot be defaulted), `corruption` is unknown, `noise_stddev` is negative,
            `mask_rate` lies outside [0, 1), or `value_range` or `seed` is invalid.

    Reference:
        Vincent, Larochelle, Bengio & Manzagol, "Extracting and Composing Robust
        Features with Denoising Autoencoders", ICML 2008; Vincent et al., "Stacked
        Denoising Autoencoders", JMLR 2010.

    Example:

    >>> encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model = keras_transfer.models.DenoisingAutoencoder(
    ...     encoder, corruption="masking", decoder_hidden_dim=8, value_range=(0, 1), seed=0)
    >>> tuple(model(np.zeros((2, 4))).shape)  # the encoder's features
    (2, 3)
    >>> tuple(model.reconstruct(np.zeros((2, 4))).shape)
    (2, 4)
    """

    def __init__(
        self,
        encoder,
        decoder=None,
        corruption="gaussian",
        noise_stddev=0.2,
        mask_rate=0.25,
        decoder_hidden_dim=128,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        super().__init__(encoder, decoder, decoder_hidden_dim, value_range, seed, **kwargs)
        self.corruption = check_one_of("corruption", corruption, ("gaussian", "masking"))
        self.noise_stddev = check_non_negative_float("noise_stddev", noise_stddev)
        self.mask_rate = check_fraction("mask_rate", mask_rate)

    def _corrupt(self, x01, seed=None):
        x01 = ops.convert_to_tensor(x01)
        tail = ops.shape(x01)[1:]
        if self.corruption == "gaussian":
            noise = self._random_rows(x01, tail, seed, "normal", stddev=self.noise_stddev)
            corrupted = x01 + ops.cast(noise, x01.dtype)
        else:
            keep = self._random_rows(x01, tail, seed) >= self.mask_rate
            corrupted = x01 * ops.cast(keep, x01.dtype)
        return corrupted, ops.ones_like(x01)

    def get_config(self):
        config = super().get_config()
        config.update({"corruption": self.corruption, "noise_stddev": self.noise_stddev, "mask_rate": self.mask_rate})
        return config
