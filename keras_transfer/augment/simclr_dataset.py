"""`simclr_dataset`: unlabeled images -> a tf.data pipeline of two augmented views."""

import inspect
import random

import numpy as np
import tensorflow as tf

from keras_transfer.augment.simclr_augmentation import SimCLRAugmentation
from keras_transfer.utils.validation import check_finite
from keras_transfer.utils.validation import check_non_negative_int
from keras_transfer.utils.validation import check_not_empty
from keras_transfer.utils.validation import check_positive_int


def _takes_seed(augmentation):
    call = getattr(augmentation, "call", augmentation)
    try:
        return "seed" in inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False


def simclr_dataset(
    x,
    batch_size=256,
    augmentation=None,
    image_size=None,
    shuffle=True,
    seed=None,
    drop_remainder=True,
    repeat=False,
):
    """Batches of two independently augmented views, `((view_1, view_2),)`.

    The element is a 1-tuple so that `model.fit(dataset)` hands SimCLR / MoCo the
    pair as `x` (a 2-tuple would be read as `(x, y)`). Augmentation runs batched
    after `batch` in parallel `map` calls and the pipeline prefetches, so it
    overlaps with the training step.

    Reproducible: the views are stateless functions of the images and of a seed per
    batch (`tf.data.Dataset.random(seed)`, a new deterministic stream each epoch), so
    `keras.utils.set_random_seed(s)` before building it gives identical batches in
    every run, epoch after epoch, without `tf.config.experimental.enable_op_determinism`
    and with the map still parallel. (As with `tf.data`'s own shuffle, the streams
    depend on `seed` and on TensorFlow's global seed.)

    Args:
        x: images `(N, H, W, C)` (NumPy array or tensor), values in the
            augmentation's `value_range`.
        batch_size: examples per batch (each gives 2 views).
        augmentation: a `SimCLRAugmentation` (default: the paper's recipe at
            `image_size`, the CIFAR recipe without blur at 32 px or less), or any
            callable on a batch; one whose `call` takes no `seed` argument uses its
            own randomness, and the views are then not reproducible.
        image_size: output size when `augmentation` is None (default: input size).
        shuffle: reshuffle the images each epoch.
        seed: non-negative int seeding the shuffle and the augmentation, or None
            to draw one from Python's `random` (which `keras.utils.set_random_seed`
            seeds).
        drop_remainder: drop a final partial batch (default True). With False the
            last batch is smaller and the contrastive models compute its exact
            loss; it must still hold at least 2 examples.
        repeat: repeat forever (use with `steps_per_epoch`).

    Returns:
        A prefetched `tf.data.Dataset` whose elements are `((view_1, view_2),)`,
        two float32 batches `(batch_size, height, width, channels)`.

    Raises:
        ValueError: if `x` is not a finite, non-empty batch of images
            `(N, H, W, C)`, `batch_size` is not positive, `seed` is negative, or
            `drop_remainder=False` would leave a last batch of one image.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020.

    Example:

    >>> images = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    >>> dataset = keras_transfer.augment.simclr_dataset(images, batch_size=4, seed=0)
    >>> ((view_1, view_2),) = next(iter(dataset))
    >>> tuple(view_1.shape), tuple(view_2.shape)
    ((4, 16, 16, 3), (4, 16, 16, 3))
    >>> len(dataset)  # 8 images, 4 per batch
    2
    """
    batch_size = check_positive_int("batch_size", batch_size)
    if seed is None:
        seed = random.randint(0, 2**31 - 1)
    seed = check_non_negative_int("seed", seed, fix="Pass None to draw one")
    if isinstance(x, np.ndarray) or tf.is_tensor(x):
        check_not_empty(x, "x")
        if len(x.shape) != 4:
            raise ValueError(
                "`x` must be images of shape (num_images, height, width, channels). "
                f"Received: x.shape={tuple(x.shape)}. Add a channel axis to grayscale images "
                "(x[..., None])."
            )
        # NaN pixels would reach the loss only after augmentation, as a NaN step.
        check_finite(x, "x")
        if not drop_remainder and len(x) % batch_size == 1:
            raise ValueError(
                "`batch_size` leaves a final batch of ONE image, which has no negatives. "
                f"Received: batch_size={batch_size} for {len(x)} images. "
                "Use drop_remainder=True or another batch size."
            )
        dataset = tf.data.Dataset.from_tensor_slices(x)
        size = len(x)
        image_shape = tuple(x.shape[1:3])
    else:
        raise ValueError(f"`x` must be a NumPy array or tensor of images. Received: x of type {type(x).__name__}")
    if augmentation is None:
        size_out = image_size or image_shape
        side = size_out if isinstance(size_out, int) else min(size_out)
        augmentation = SimCLRAugmentation.small_image_defaults(size_out) if side <= 32 else SimCLRAugmentation(size_out)
    if shuffle:
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    # One random int64 per batch, a different deterministic stream each epoch; its own
    # seed so that it is not the shuffle's stream. Views 1 and 2 get seeds (r, 1), (r, 2).
    view_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0] >> 1)
    batch_seeds = tf.data.Dataset.random(seed=view_seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip(dataset, batch_seeds)

    def two_views(images, r):
        if not _takes_seed(augmentation):  # a user's layer: its own (stateful) randomness
            return ((augmentation(images), augmentation(images)),)
        return ((augmentation(images, seed=tf.stack([r, 1])), augmentation(images, seed=tf.stack([r, 2]))),)

    dataset = dataset.map(two_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
