"""`ImageInputAdapter`: resizes images and converts their channels to what a backbone takes."""

import keras
from keras import ops

from keras_transfer.utils import validation

GREY_TO_RGB = ("replicate", "learned", "jet")


@keras.saving.register_keras_serializable(package="keras_transfer")
class ImageInputAdapter(keras.layers.Layer):
    """Maps the task's images onto a backbone's input space.

    Resizes to `target_size` (antialiased, `interpolation`) and converts the
    channel count: RGB to grayscale by ITU-R BT.601 luminance
    (`0.299 R + 0.587 G + 0.114 B`); grayscale to RGB by `grey_to_rgb`:

    - "replicate": the grey value in each of R, G and B;
    - "learned": a trainable 1x1 colour map, `rgb = grey * scale + shift` per
      channel, starting as replication (scale 1, shift 0), so that training can
      move grey images towards the colour statistics the backbone saw;
    - "jet": a fixed pseudo-colour map (the piecewise-linear jet colormap on
      `value_range`), which spreads grey levels over hues.

    Put it in front of a pretrained backbone whose input differs from the task's
    images (8x8 grey digits into an RGB ImageNet network, say).

    Args:
        target_size: int or (height, width) the backbone expects, or None to
            keep the size.
        channels: channels the backbone expects (1 or 3).
        interpolation: resize method of `keras.ops.image.resize`, e.g.
            "bilinear" or "nearest".
        grey_to_rgb: "replicate", "learned" or "jet" (above); the last two need
            `channels=3` and grey inputs.
        value_range: (low, high) of the pixel values, for "jet".
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if `target_size` is not None or a pair of positive ints, or
            `channels` is not 1 or 3, `grey_to_rgb` is unknown or pseudo-colours
            for a grey backbone; when built, if the input is not a batch of images
            with 1 or 3 channels, or `grey_to_rgb` pseudo-colours RGB inputs.

    Reference:
        Elsayed, Goodfellow & Sohl-Dickstein, "Adversarial Reprogramming of Neural
        Networks", ICLR 2019 (a learned map from a new task's inputs into a pretrained
        network's input space); the jet colormap is MATLAB's.

    Example:

    >>> adapter = keras_transfer.layers.ImageInputAdapter(target_size=(32, 32), channels=3)
    >>> tuple(adapter(np.zeros((2, 8, 8, 1), "float32")).shape)
    (2, 32, 32, 3)
    >>> to_gray = keras_transfer.layers.ImageInputAdapter(channels=1)
    >>> np.round(to_gray(np.full((1, 2, 2, 3), 100.0, "float32")).numpy()[0, 0, 0], 3)
    array([100.], dtype=float32)
    >>> jet = keras_transfer.layers.ImageInputAdapter(channels=3, grey_to_rgb="jet", value_range=(0, 1))
    >>> np.round(jet(np.array([0.0, 0.5, 1.0], "float32").reshape(1, 1, 3, 1)).numpy()[0, 0], 3)
    array([[0. , 0. , 0.5],
           [0.5, 1. , 0.5],
           [0.5, 0. , 0. ]], dtype=float32)
    """

    def __init__(
        self,
        target_size=None,
        channels=3,
        interpolation="bilinear",
        grey_to_rgb="replicate",
        value_range=(0, 255),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if target_size is not None:
            if isinstance(target_size, int):
                target_size = (target_size, target_size)
            if len(target_size) != 2 or any(int(v) < 1 for v in target_size):
                raise ValueError(
                    "`target_size` must be None or a (height, width) pair of positive integers. "
                    f"Received: target_size={target_size!r}"
                )
            target_size = (int(target_size[0]), int(target_size[1]))
        validation.check_one_of("channels", channels, (1, 3))
        validation.check_one_of("grey_to_rgb", grey_to_rgb, GREY_TO_RGB)
        if grey_to_rgb != "replicate" and channels != 3:
            raise ValueError(
                f"`grey_to_rgb` must be 'replicate' when the backbone takes grey images (channels=1): "
                f"pseudo-colouring maps grey to RGB. Received: grey_to_rgb={grey_to_rgb!r}, channels={channels}"
            )
        self.grey_to_rgb = grey_to_rgb
        self.value_range = validation.check_value_range(value_range)
        self.target_size = target_size
        self.channels = channels
        self.interpolation = interpolation

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] not in (1, 3):
            raise ValueError(
                "`inputs` must be images of shape (batch, height, width, 1 or 3). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if self.grey_to_rgb != "replicate" and input_shape[-1] != 1:
            raise ValueError(
                f"`inputs` must be grey images (1 channel) with grey_to_rgb={self.grey_to_rgb!r}. Received: "
                f"input_shape={tuple(input_shape)}. Use grey_to_rgb='replicate' for RGB inputs."
            )
        if self.grey_to_rgb == "learned":
            self.colour_scale = self.add_weight(shape=(3,), initializer="ones", name="colour_scale")
            self.colour_shift = self.add_weight(shape=(3,), initializer="zeros", name="colour_shift")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        # Resize first (on one channel for grey inputs): colour maps apply per output pixel, and
        # no gradient to a learned colour map goes through the resize.
        if self.target_size is not None and tuple(x.shape[1:3]) != self.target_size:
            x = ops.image.resize(x, self.target_size, interpolation=self.interpolation, antialias=True)
        in_channels = x.shape[-1]
        if in_channels == 1 and self.channels == 3:
            x = self._grey_to_rgb(x)
        elif in_channels == 3 and self.channels == 1:
            weights = ops.convert_to_tensor([0.299, 0.587, 0.114], dtype=self.compute_dtype)
            x = ops.sum(x * weights, axis=-1, keepdims=True)
        return x

    def _grey_to_rgb(self, x):
        if self.grey_to_rgb == "learned":
            return x * ops.cast(self.colour_scale, x.dtype) + ops.cast(self.colour_shift, x.dtype)
        if self.grey_to_rgb == "jet":
            low, high = self.value_range
            v = ops.clip((x - low) / (high - low), 0.0, 1.0)
            # Jet: R, G, B are tents centred at 3/4, 1/2 and 1/4 of the range (clipped at 1).
            centres = ops.convert_to_tensor([3.0, 2.0, 1.0], dtype=x.dtype)
            rgb = ops.clip(1.5 - ops.abs(4.0 * v - centres), 0.0, 1.0)
            return low + rgb * (high - low)
        return ops.repeat(x, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        size = self.target_size or tuple(input_shape[1:3])
        return (input_shape[0], size[0], size[1], self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "target_size": list(self.target_size) if self.target_size else None,
                "channels": self.channels,
                "interpolation": self.interpolation,
                "grey_to_rgb": self.grey_to_rgb,
                "value_range": list(self.value_range),
            }
        )
        return config
