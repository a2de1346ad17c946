"""Batched random image operations of the SimCLR augmentation (Chen et al., 2020, App. A).

Every function takes a float batch `(B, H, W, C)` with values in [0, 1] and draws
independent random parameters PER IMAGE with vectorised TensorFlow ops (one op
per batch, not a Python or `map_fn` loop), so they run fast inside `tf.data`.
TensorFlow ops on purpose: `tf.image.crop_and_resize`, `rgb_to_hsv` and the
depthwise-conv trick below have no `keras.ops` equivalent, and the pipeline runs
in `tf.data` anyway.

Written by hand where Keras core falls short: Keras has no
random-resized-crop and its `RandomGaussianBlur` caps sigma at 1 (SimCLR draws
sigma in [0.1, 2]); the jitter/grayscale here are batched with a per-image
apply-probability, as the paper specifies.

Randomness is stateless: every function takes `seed`, a shape-`(2,)` integer
tensor, and the same seed gives the same output whatever the thread or the
order in which a parallel `tf.data` map runs the calls (`simclr_dataset` seeds
each batch). `seed=None` draws a seed with one stateful op (not reproducible
inside a parallel map).
"""

import math

import tensorflow as tf


def resolve_seed(seed=None):
    """`seed` as a shape-(2,) int64 tensor; None draws one (a single stateful op)."""
    if seed is None:
        return tf.random.uniform((2,), maxval=2**31 - 1, dtype="int64")
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape.rank != 1 or seed.shape[0] not in (2, None):
        raise ValueError(
            "`seed` must be a shape-(2,) int32 or int64 tensor (e.g. `tf.constant([7, 0])`), or None. "
            f"Received: seed with dtype {seed.dtype.name} and shape {tuple(seed.shape)}"
        )
    return tf.cast(seed, "int64")


def split_seed(seed, num):
    """`num` independent shape-(2,) seeds derived from `seed` (None: drawn)."""
    return tf.unstack(tf.random.experimental.stateless_split(resolve_seed(seed), num), num=num)


def _uniform(batch, low, high, seed):
    return tf.random.stateless_uniform((batch,), seed, low, high, dtype="float32")


def _apply_mask(batch, probability, seed):
    """Per-image booleans, True with `probability`, shaped to broadcast over (H, W, C)."""
    return tf.reshape(tf.random.stateless_uniform((batch,), seed) < probability, (-1, 1, 1, 1))


def random_crop_boxes(batch, image_height, image_width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
    """Normalised `[y1, x1, y2, x2]` boxes of random area fraction and aspect ratio.

    Area fraction ~ U(scale), log aspect ratio (w/h) ~ U(log ratio), as torchvision's
    RandomResizedCrop; a side that would exceed the image is clipped to it (instead of
    torchvision's retry loop), then the box is placed uniformly at random.
    """
    area_seed, ratio_seed, y_seed, x_seed = split_seed(seed, 4)
    area = _uniform(batch, scale[0], scale[1], area_seed)
    log_ratio = _uniform(batch, math.log(ratio[0]), math.log(ratio[1]), ratio_seed)
    aspect = tf.exp(log_ratio)
    h_over_w = float(image_height) / float(image_width)
    # w_px = sqrt(area * H * W * aspect) -> fraction of W; h likewise.
    width = tf.minimum(tf.sqrt(area * aspect * h_over_w), 1.0)
    height = tf.minimum(tf.sqrt(area / aspect / h_over_w), 1.0)
    y1 = _uniform(batch, 0.0, 1.0, y_seed) * (1.0 - height)
    x1 = _uniform(batch, 0.0, 1.0, x_seed) * (1.0 - width)
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=1)


def random_resized_crop(images, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
    """Random-resized crop of every image of the batch to `size` (h, w), bilinear.

    One `tf.image.crop_and_resize` call for the whole batch.
    """
    batch = tf.shape(images)[0]
    boxes = random_crop_boxes(batch, images.shape[1], images.shape[2], scale, ratio, seed)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), size)


def random_resized_crop_bounding_box(image, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
    """Random-resized crop of ONE image with `tf.image.stateless_sample_distorted_bounding_box`.

    The SimCLR reference code's crop (one image at a time; map it before batching).
    """
    shape = tf.shape(image)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
        seed=resolve_seed(seed),
        min_object_covered=0.1,
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=100,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, size, method="bilinear")


def random_flip_left_right(images, seed=None):
    """Mirrors each image left-right with probability 1/2."""
    flip = _apply_mask(tf.shape(images)[0], 0.5, resolve_seed(seed))
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def _grayscale(images):
    if images.shape[-1] == 1:
        return images
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images))


def color_jitter(images, strength=0.5, probability=0.8, seed=None):
    """SimCLR colour distortion: brightness, contrast, saturation (0.8 s) and hue (0.2 s).

    Brightness is multiplicative, as in SimCLR v2's code; the four distortions run
    in a fixed order (the paper shuffles the order per image). Single-channel images
    get brightness and contrast only. Applied to each image with `probability`.
    """
    if strength == 0 or probability == 0:
        return images
    batch = tf.shape(images)[0]
    brightness_seed, contrast_seed, saturation_seed, hue_seed, apply_seed = split_seed(seed, 5)
    s = 0.8 * strength
    out = images * tf.reshape(_uniform(batch, max(1.0 - s, 0.0), 1.0 + s, brightness_seed), (-1, 1, 1, 1))
    out = tf.clip_by_value(out, 0.0, 1.0)
    mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
    out = (out - mean) * tf.reshape(_uniform(batch, max(1.0 - s, 0.0), 1.0 + s, contrast_seed), (-1, 1, 1, 1)) + mean
    out = tf.clip_by_value(out, 0.0, 1.0)
    if images.shape[-1] == 3:
        gray = tf.image.rgb_to_grayscale(out)
        factor = tf.reshape(_uniform(batch, max(1.0 - s, 0.0), 1.0 + s, saturation_seed), (-1, 1, 1, 1))
        out = tf.clip_by_value(gray + (out - gray) * factor, 0.0, 1.0)
        hsv = tf.image.rgb_to_hsv(out)
        delta = tf.reshape(_uniform(batch, -0.2 * strength, 0.2 * strength, hue_seed), (-1, 1, 1))
        hue = tf.math.floormod(hsv[..., 0] + delta, 1.0)
        out = tf.image.hsv_to_rgb(tf.stack([hue, hsv[..., 1], hsv[..., 2]], axis=-1))
        out = tf.clip_by_value(out, 0.0, 1.0)
    return tf.where(_apply_mask(batch, probability, apply_seed), out, images)


def random_grayscale(images, probability=0.2, seed=None):
    """Converts each RGB image to grayscale (kept 3-channel) with `probability`."""
    if images.shape[-1] == 1 or probability == 0:
        return images
    mask = _apply_mask(tf.shape(images)[0], probability, resolve_seed(seed))
    return tf.where(mask, _grayscale(images), images)


def blur_kernel_size(image_size):
    """SimCLR's kernel: 10 % of the image side, made odd (0 means no blur)."""
    radius = int(image_size) // 20
    return 2 * radius + 1 if radius > 0 else 0


def random_gaussian_blur(images, kernel_size, sigma=(0.1, 2.0), probability=0.5, seed=None):
    """Gaussian blur with sigma ~ U(sigma) per image, applied with `probability`.

    The per-image kernels run as ONE separable depthwise convolution: the batch is
    folded into the channel axis, so each (image, channel) gets its own kernel.
    """
    if kernel_size <= 1 or probability == 0:
        return images
    batch = tf.shape(images)[0]
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    radius = kernel_size // 2
    sigma_seed, apply_seed = split_seed(seed, 2)
    sigmas = _uniform(batch, sigma[0], sigma[1], sigma_seed)
    offsets = tf.range(-radius, radius + 1, dtype="float32")
    kernel = tf.exp(-tf.square(offsets)[None, :] / (2.0 * tf.square(sigmas)[:, None]))
    kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)  # (B, K)
    kernel = tf.reshape(tf.repeat(kernel, channels, axis=0), (-1, kernel_size))  # (B*C, K)
    folded = tf.reshape(tf.transpose(images, (1, 2, 0, 3)), (1, height, width, -1))
    padded = tf.pad(folded, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    k_h = tf.reshape(tf.transpose(kernel), (kernel_size, 1, -1, 1))
    k_w = tf.reshape(tf.transpose(kernel), (1, kernel_size, -1, 1))
    out = tf.nn.depthwise_conv2d(padded, k_h, strides=[1, 1, 1, 1], padding="VALID")
    out = tf.nn.depthwise_conv2d(out, k_w, strides=[1, 1, 1, 1], padding="VALID")
    out = tf.transpose(tf.reshape(out, (height, width, batch, channels)), (2, 0, 1, 3))
    return tf.where(_apply_mask(batch, probability, apply_seed), out, images)
