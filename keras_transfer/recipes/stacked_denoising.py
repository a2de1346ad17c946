"""Stacked denoising autoencoders: greedy layer-wise pre-training (Vincent et al., 2010)."""

import keras
import numpy as np

from keras_transfer.models.denoising_autoencoder import DenoisingAutoencoder
from keras_transfer.utils import validation

# The range of each activation's codes: the next layer's denoising autoencoder works in it.
CODE_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def _check_arguments(x, layer_sizes, activation, epochs, batch_size):
    sizes = list(layer_sizes) if isinstance(layer_sizes, (list, tuple)) else None
    if not sizes or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 1 for s in sizes):
        raise ValueError(
            "`layer_sizes` must be a non-empty list of positive ints, one per layer, e.g. [128, 64]. "
            f"Received: layer_sizes={layer_sizes!r}"
        )
    validation.check_one_of("activation", activation, tuple(CODE_RANGES))
    validation.check_positive_int("epochs", epochs)
    validation.check_positive_int("batch_size", batch_size)
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"`x` must be a non-empty batch of examples (at least 2 dimensions). Received: x.shape={x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("`x` must be finite. Received: NaN or Inf values. Drop or impute them first.")
    return [int(s) for s in sizes], x.astype("float32")


def pretrain_stacked_denoising(
    x,
    layer_sizes,
    activation="sigmoid",
    corruption="masking",
    mask_rate=0.25,
    noise_stddev=0.2,
    value_range=(0, 255),
    epochs=10,
    batch_size=64,
    learning_rate=1e-3,
    seed=0,
    verbose=0,
):
    """Greedy layer-wise denoising pre-training of a stack of `Dense` layers.

    Layer k is trained as a `DenoisingAutoencoder`: its input (the data for k = 1, else
    the codes of the layers below on CLEAN data) is corrupted, encoded by
    `Dense(layer_sizes[k], activation)` and decoded by `Dense(input size, sigmoid)`
    back to the clean input (MSE in [0, 1] units). Its weights are then fixed while the
    next layer trains on its codes. The result is the stacked encoder, ready to be
    fine-tuned on labels (put a head on it) or probed.

    Args:
        x: training inputs, `(examples, ...)`; flattened by the encoder.
        layer_sizes: units of each layer, bottom first, e.g. `[128, 64]`.
        activation: "sigmoid" (codes in [0, 1]) or "tanh" (codes in [-1, 1]).
        corruption: "masking" or "gaussian" (see `DenoisingAutoencoder`).
        mask_rate: share of entries zeroed by masking noise, in [0, 1).
        noise_stddev: standard deviation of Gaussian noise, in [0, 1] units.
        value_range: (low, high) of `x`.
        epochs: epochs of each layer's training.
        batch_size: batch size of each layer's training.
        learning_rate: Adam's learning rate.
        seed: seed of the weights and of the noise (layer k uses `seed + k`).
        verbose: verbosity of each `fit`.

    Returns:
        `(encoder, losses)`: a `keras.Sequential` `Flatten -> Dense -> ... -> Dense`
        holding the pre-trained layers, and per layer the reconstruction losses of its
        first and last epoch, `[(first, last), ...]`.

    Raises:
        ValueError: if `layer_sizes` is not a non-empty list of positive ints,
            `activation` is unknown, `epochs` or `batch_size` is not positive, `x` is
            empty, has one dimension or is not finite, or as `DenoisingAutoencoder`
            for the noise settings.

    Reference:
        Vincent, Larochelle, Lajoie, Bengio & Manzagol, "Stacked Denoising
        Autoencoders: Learning Useful Representations in a Deep Network with a Local
        Denoising Criterion", JMLR 2010 (§3.5, Fig. 3).

    Example:

    >>> x = np.random.default_rng(0).uniform(0, 1, (64, 12)).astype("float32")
    >>> encoder, losses = keras_transfer.recipes.pretrain_stacked_denoising(
    ...     x, [8, 4], value_range=(0, 1), epochs=2, batch_size=32)
    >>> [layer.name for layer in encoder.layers]
    ['flatten', 'sdae_dense_1', 'sdae_dense_2']
    >>> tuple(encoder.predict(x, verbose=0).shape), len(losses)
    ((64, 4), 2)
    """
    sizes, x = _check_arguments(x, layer_sizes, activation, epochs, batch_size)
    inputs, codes, codes_range = x.reshape(len(x), -1), None, validation.check_value_range(value_range)
    layers, losses = [], []
    for k, size in enumerate(sizes, start=1):
        keras.utils.set_random_seed(seed + k)
        data = inputs if codes is None else codes
        dense = keras.layers.Dense(size, activation=activation, name=f"sdae_dense_{k}")
        encoder = keras.Sequential([keras.Input((data.shape[1],)), dense])
        decoder = keras.Sequential([keras.Input((size,)), keras.layers.Dense(data.shape[1], activation="sigmoid")])
        model = DenoisingAutoencoder(
            encoder,
            decoder=decoder,
            corruption=corruption,
            mask_rate=mask_rate,
            noise_stddev=noise_stddev,
            value_range=codes_range,
            seed=seed + k,
        )
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        history = model.fit(data, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)
        losses.append((float(history.history["loss"][0]), float(history.history["loss"][-1])))
        layers.append(dense)
        codes, codes_range = encoder.predict(data, batch_size=256, verbose=0), CODE_RANGES[activation]
    stacked = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(name="flatten"), *layers])
    return stacked, losses
