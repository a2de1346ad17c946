"""The SimCLR augmentation as a batched Keras preprocessing layer (run it in `tf.data`)."""

import keras
import tensorflow as tf

from keras_transfer.augment import image_ops
from keras_transfer.utils.validation import check_fraction
from keras_transfer.utils.validation import check_non_negative_float
from keras_transfer.utils.validation import check_one_of
from keras_transfer.utils.validation import check_positive_int
from keras_transfer.utils.validation import check_value_range


def _check_range(name, value, low, high=None):
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if ok:
        a, b = float(value[0]), float(value[1])
        ok = low < a <= b and (high is None or b <= high)
    if not ok:
        upper = f" and <= {high}" if high is not None else ""
        raise ValueError(
            f"`{name}` must be a pair (min, max) with {low} < min <= max{upper}. Received: {name}={value!r}"
        )
    return (float(value[0]), float(value[1]))


@keras.saving.register_keras_serializable(package="keras_transfer")
class SimCLRAugmentation(keras.layers.Layer):
    """SimCLR's stochastic view generator, batched.

    Random resized crop (area `crop_scale`, aspect `crop_ratio`) to `image_size`,
    horizontal flip, colour jitter of strength `jitter_strength` with probability
    `jitter_probability`, grayscale with `grayscale_probability`, Gaussian blur
    (kernel 10 % of the image, sigma in `blur_sigma`) with `blur_probability`.
    Every random parameter is drawn per image. Defaults follow the paper's ImageNet
    recipe except `jitter_strength=0.5` (its CIFAR value); `small_image_defaults`
    gives the CIFAR recipe (no blur) for images of 32 px or less.

    Input: a batch `(B, H, W, C)` (C = 1 or 3) of values in `value_range`, any
    dtype. Output: float32 `(B, image_size, image_size, C)` in `value_range`.
    Meant for `tf.data` (see `keras_transfer.augment.simclr_dataset`);
    TensorFlow-only, like tf.data.

    Args:
        image_size: int or (height, width) of the output views.
        crop_scale: (min, max) area fraction of the random crop, in (0, 1].
        crop_ratio: (min, max) aspect ratio (width / height) of the crop.
        flip: mirror each image left-right with probability 1/2.
        jitter_strength: non-negative strength `s` of the colour jitter
            (brightness, contrast and saturation `0.8 s`, hue `0.2 s`).
        jitter_probability: probability of jittering an image, in [0, 1].
        grayscale_probability: probability of turning an image grey, in [0, 1].
        blur_probability: probability of blurring an image, in [0, 1].
        blur_sigma: (min, max) standard deviation of the Gaussian blur, in pixels.
        value_range: (low, high) of the input and output pixel values.
        crop_method: "crop_and_resize" (one batched `tf.image.crop_and_resize`,
            the default and the faster) or "bounding_box" (per image
            `tf.image.sample_distorted_bounding_box`, the reference code's crop).
        **kwargs: base `Layer` arguments (`name`, ...); `trainable` and
            `autocast` default to False.

    Call arguments:
        images: a batch `(B, H, W, C)` of images with values in `value_range`.
        training: True (default) for random views; False only resizes (the
            evaluation view).
        seed: a shape-`(2,)` integer tensor for a reproducible view: the random
            ops are stateless, so the output depends only on the images and the
            seed, also inside a parallel `tf.data` map. None draws a seed with one
            stateful op (fine in a model's train step, not reproducible in a
            parallel map).

    Raises:
        ValueError: if an argument is out of range (sizes not positive, ranges
            not ordered pairs, probabilities outside [0, 1], unknown
            `crop_method`); when called, if `images` is not a batch of 1- or
            3-channel images or `seed` is not a shape-(2,) integer tensor.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020 (Appendix A).

    Example:

    >>> import tensorflow as tf
    >>> augment = keras_transfer.augment.SimCLRAugmentation(image_size=16)
    >>> images = np.random.default_rng(0).uniform(0, 255, (4, 24, 24, 3)).astype("float32")
    >>> views = augment(images, seed=tf.constant([1, 2]))
    >>> tuple(views.shape)
    (4, 16, 16, 3)
    >>> bool(np.allclose(views, augment(images, seed=tf.constant([1, 2]))))  # same seed
    True
    >>> tuple(augment(images, training=False).shape)  # the evaluation view: resized only
    (4, 16, 16, 3)
    """

    def __init__(
        self,
        image_size,
        crop_scale=(0.08, 1.0),
        crop_ratio=(3 / 4, 4 / 3),
        flip=True,
        jitter_strength=0.5,
        jitter_probability=0.8,
        grayscale_probability=0.2,
        blur_probability=0.5,
        blur_sigma=(0.1, 2.0),
        value_range=(0, 255),
        crop_method="crop_and_resize",
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(image_size, (tuple, list)):
            if len(image_size) != 2:
                raise ValueError(
                    f"`image_size` must be an int or a (height, width) pair. Received: image_size={image_size!r}"
                )
            image_size = tuple(check_positive_int("image_size", int(v)) for v in image_size)
        else:
            image_size = (check_positive_int("image_size", image_size),) * 2
        self.image_size = image_size
        self.crop_scale = _check_range("crop_scale", crop_scale, 0.0, 1.0)
        self.crop_ratio = _check_range("crop_ratio", crop_ratio, 0.0)
        self.flip = bool(flip)
        self.jitter_strength = check_non_negative_float("jitter_strength", jitter_strength)
        self.jitter_probability = check_fraction("jitter_probability", jitter_probability, inclusive_high=True)
        self.grayscale_probability = check_fraction("grayscale_probability", grayscale_probability, inclusive_high=True)
        self.blur_probability = check_fraction("blur_probability", blur_probability, inclusive_high=True)
        self.blur_sigma = _check_range("blur_sigma", blur_sigma, 0.0)
        self.value_range = check_value_range(value_range)
        self.crop_method = check_one_of("crop_method", crop_method, ("crop_and_resize", "bounding_box"))

    @classmethod
    def small_image_defaults(cls, image_size, **kwargs):
        """The paper's CIFAR-10 recipe: no blur, jitter strength 0.5.

        Args:
            image_size: int or (height, width) of the output views.
            **kwargs: other `SimCLRAugmentation` arguments (they override the
                recipe's values).

        Returns:
            A `SimCLRAugmentation`.
        """
        kwargs.setdefault("blur_probability", 0.0)
        kwargs.setdefault("jitter_strength", 0.5)
        return cls(image_size, **kwargs)

    def _check_images(self, images):
        if images.shape.rank != 4:
            raise ValueError(
                "`images` must be a batch of shape (batch, height, width, channels). "
                f"Received: images.shape={tuple(images.shape)}. Batch the dataset before "
                "mapping the augmentation, or add a leading axis to a single image."
            )
        if images.shape[-1] not in (1, 3):
            raise ValueError(f"`images` must have 1 or 3 channels. Received: images.shape={tuple(images.shape)}")

    def call(self, images, training=True, seed=None):
        images = tf.convert_to_tensor(images)
        self._check_images(images)
        low, high = self.value_range
        x = (tf.cast(images, "float32") - low) / (high - low)
        if not training:
            return tf.image.resize(x, self.image_size) * (high - low) + low
        crop_seed, flip_seed, jitter_seed, gray_seed, blur_seed = image_ops.split_seed(seed, 5)
        if self.crop_method == "crop_and_resize":
            x = image_ops.random_resized_crop(x, self.image_size, self.crop_scale, self.crop_ratio, crop_seed)
        else:
            # One seed per image (row i of a stateless split): independent crops.
            seeds = tf.random.experimental.stateless_split(crop_seed, tf.shape(x)[0])
            x = tf.map_fn(
                lambda args: image_ops.random_resized_crop_bounding_box(
                    args[0], self.image_size, self.crop_scale, self.crop_ratio, args[1]
                ),
                (x, seeds),
                fn_output_signature=tf.TensorSpec(self.image_size + (x.shape[-1],), "float32"),
            )
        if self.flip:
            x = image_ops.random_flip_left_right(x, flip_seed)
        x = image_ops.color_jitter(x, self.jitter_strength, self.jitter_probability, jitter_seed)
        x = image_ops.random_grayscale(x, self.grayscale_probability, gray_seed)
        x = image_ops.random_gaussian_blur(
            x,
            image_ops.blur_kernel_size(min(self.image_size)),
            self.blur_sigma,
            self.blur_probability,
            blur_seed,
        )
        return tf.clip_by_value(x, 0.0, 1.0) * (high - low) + low

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.image_size + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_size": list(self.image_size),
                "crop_scale": list(self.crop_scale),
                "crop_ratio": list(self.crop_ratio),
                "flip": self.flip,
                "jitter_strength": self.jitter_strength,
                "jitter_probability": self.jitter_probability,
                "grayscale_probability": self.grayscale_probability,
                "blur_probability": self.blur_probability,
                "blur_sigma": list(self.blur_sigma),
                "value_range": list(self.value_range),
                "crop_method": self.crop_method,
            }
        )
        return config
