"""scikit-learn's 8x8 digits at any size and channel count, as arrays and `tf.data`."""

import functools

import numpy as np

from keras_transfer.utils import validation


def _normalize_size(image_size, name="image_size"):
    received = image_size
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in image_size)
    ):
        raise ValueError(
            f"`{name}` must be a positive integer or a (height, width) pair of positive integers. "
            f"Received: {name}={received!r}"
        )
    return tuple(image_size)


@functools.lru_cache(maxsize=1)
def _raw_digits():
    from sklearn.datasets import load_digits as sk_load_digits

    data = sk_load_digits()
    images = (data.images.astype("float32") / 16.0 * 255.0).astype("float32")
    return images, data.target.astype("int64")


def resize_images(images, image_size):
    """Resizes a NHW or NHWC float array (bilinear, antialiased) and returns float32 NHWC."""
    import tensorflow as tf

    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[..., None]
    if tuple(images.shape[1:3]) == tuple(image_size):
        return images
    return tf.image.resize(images, image_size, method="bilinear", antialias=True).numpy()


def split_indices(y, test_fraction=0.25, seed=0):
    """A stratified, seeded train/test split of indices (the same for digits and digits-M)."""
    from sklearn.model_selection import train_test_split

    validation.check_fraction("test_fraction", test_fraction, inclusive_low=False)
    indices = np.arange(len(y))
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=y)
    return np.sort(train), np.sort(test)


def digit_images(image_size=8, channels=1):
    """All 1,797 digits as uint8 NHWC in [0, 255] and their labels (no split)."""
    image_size = _normalize_size(image_size)
    validation.check_one_of("channels", channels, (1, 3))
    images, labels = _raw_digits()
    x = resize_images(images, image_size)
    x = np.clip(np.round(x), 0, 255).astype("uint8")
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    return x, labels.copy()


def load_digits(image_size=8, channels=1, test_fraction=0.25, seed=0):
    """Loads scikit-learn's 8x8 digits as `((x_train, y_train), (x_test, y_test))`.

    The 1,797 handwritten digits that ship with scikit-learn, resized to any
    size and channel count (the way 8x8 grey digits are mapped onto the input
    of an RGB backbone), with a stratified, seeded train/test split.

    Args:
        image_size: int or (height, width); the 8x8 originals are resized
            bilinearly (antialiased).
        channels: 1 (grayscale) or 3 (the grey value repeated as RGB).
        test_fraction: share of each class held out for testing, in (0, 1).
        seed: seed of the stratified split.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images in [0, 255],
        NHWC, and int64 labels 0..9.

    Raises:
        ValueError: if `image_size` is not a positive int or pair of them,
            `channels` is not 1 or 3, or `test_fraction` is outside (0, 1).

    Example:

    >>> (x_train, y_train), (x_test, y_test) = keras_transfer.datasets.load_digits(
    ...     image_size=16, channels=3)
    >>> x_train.shape, x_train.dtype, y_train.shape
    ((1347, 16, 16, 3), dtype('uint8'), (1347,))
    >>> x_test.shape
    (450, 16, 16, 3)
    """
    x, y = digit_images(image_size, channels)
    train, test = split_indices(y, test_fraction, seed)
    return (x[train], y[train]), (x[test], y[test])
