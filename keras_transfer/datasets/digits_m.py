"""digits-M: digits blended with colour photo patches, the way MNIST-M is built.

Ganin & Lempitsky (2015) made MNIST-M by taking, for each MNIST digit, a random
patch of a BSDS500 colour photo and writing |patch - digit| per channel. Here the
photos are the two that ship with scikit-learn (`load_sample_images`), so the
target domain is embedded, seeded and deterministic.
"""

import functools

import numpy as np

from keras_transfer.datasets import digits as digits_lib


@functools.lru_cache(maxsize=1)
def _photos():
    from sklearn.datasets import load_sample_images

    return [np.asarray(image, dtype="float32") for image in load_sample_images().images]


def blend_with_photos(x, seed=0):
    """Blends digits with colour photo patches, `|patch - x|` per channel.

    Args:
        x: uint8 digits NHWC with 1 or 3 channels.
        seed: seed of the photo and patch draws.

    Returns:
        uint8 RGB images of the same size as `x`.

    Raises:
        ValueError: if `x` is not a batch of 1- or 3-channel images or is larger
            than the sample photos.
    """
    x = np.asarray(x, dtype="float32")
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"`x` must be a batch of images of shape (N, H, W, 1 or 3). Received: x with shape {x.shape}")
    n, height, width = x.shape[:3]
    photos = _photos()
    max_h = min(p.shape[0] for p in photos)
    max_w = min(p.shape[1] for p in photos)
    if height > max_h or width > max_w:
        raise ValueError(
            f"`image_size` must be at most ({max_h}, {max_w}) for digits-M (the sample photos' size). "
            f"Received: image_size={(height, width)}"
        )
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(photos), size=n)
    out = np.empty((n, height, width, 3), dtype="float32")
    digits_rgb = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    for i in range(n):
        photo = photos[which[i]]
        top = rng.integers(0, photo.shape[0] - height + 1)
        left = rng.integers(0, photo.shape[1] - width + 1)
        patch = photo[top : top + height, left : left + width]
        out[i] = np.abs(patch - digits_rgb[i])
    return np.clip(np.round(out), 0, 255).astype("uint8")


def load_digits_m(image_size=32, test_fraction=0.25, seed=0):
    """digits-M: scikit-learn's digits blended with colour photo patches.

    The target domain of the embedded domain-adaptation examples, built the way
    MNIST-M is: each digit becomes `|patch - digit|` per channel, with a random
    patch of one of the two colour photos that ship with scikit-learn
    (`load_sample_images`), so the data is embedded, seeded and deterministic.
    The split is the one `load_digits` makes with the same `seed`, so example i
    of digits-M shows the same digit as example i of
    `load_digits(..., channels=3)`.

    Args:
        image_size: int or (height, width), at most the photos' size.
        test_fraction: share of each class held out for testing.
        seed: seed of the split and of the photo patches.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 RGB images NHWC and
        int64 labels 0..9.

    Raises:
        ValueError: if `image_size` is not a positive int or pair of them, is
            larger than the photos, or `test_fraction` is outside (0, 1).

    Reference:
        Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
        ICML 2015 (MNIST-M).

    Example:

    >>> (x_train, y_train), _ = keras_transfer.datasets.load_digits_m(image_size=16)
    >>> x_train.shape, x_train.dtype
    ((1347, 16, 16, 3), dtype('uint8'))
    """
    x, y = digits_lib.digit_images(image_size, channels=1)
    blended = blend_with_photos(x, seed=seed)
    train, test = digits_lib.split_indices(y, test_fraction, seed)
    return (blended[train], y[train]), (blended[test], y[test])
