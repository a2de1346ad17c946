"""`ImageInputAdapter`: resizes images and converts their channels to what a backbone takes."""

import keras
from keras import ops

from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class ImageInputAdapter(keras.layers.Layer):
    """Maps the task's images onto a backbone's input space.

    Resizes to `target_size` (antialiased, `interpolation`) and converts the
    channel count: grayscale to RGB by repeating the channel, RGB to grayscale
    by ITU-R BT.601 luminance (`0.299 R + 0.587 G + 0.114 B`). Put it in front
    of a pretrained backbone whose input differs from the task's images (8x8
    grey digits into an RGB ImageNet network, say).

    Args:
        target_size: int or (height, width) the backbone expects, or None to
            keep the size.
        channels: channels the backbone expects (1 or 3).
        interpolation: resize method of `keras.ops.image.resize`, e.g.
            "bilinear" or "nearest".
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if `target_size` is not None or a pair of positive ints, or
            `channels` is not 1 or 3; when built, if the input is not a batch of
            images with 1 or 3 channels.

    Example:

    >>> adapter = keras_transfer.layers.ImageInputAdapter(target_size=(32, 32), channels=3)
    >>> tuple(adapter(np.zeros((2, 8, 8, 1), "float32")).shape)
    (2, 32, 32, 3)
    >>> to_gray = keras_transfer.layers.ImageInputAdapter(channels=1)
    >>> np.round(to_gray(np.full((1, 2, 2, 3), 100.0, "float32")).numpy()[0, 0, 0], 3)
    array([100.], dtype=float32)
    """

    def __init__(self, target_size=None, channels=3, interpolation="bilinear", **kwargs):
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
        self.target_size = target_size
        self.channels = channels
        self.interpolation = interpolation

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] not in (1, 3):
            raise ValueError(
                "`inputs` must be images of shape (batch, height, width, 1 or 3). "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        in_channels = x.shape[-1]
        if in_channels == 1 and self.channels == 3:
            x = ops.repeat(x, 3, axis=-1)
        elif in_channels == 3 and self.channels == 1:
            weights = ops.convert_to_tensor([0.299, 0.587, 0.114], dtype=self.compute_dtype)
            x = ops.sum(x * weights, axis=-1, keepdims=True)
        if self.target_size is not None and tuple(x.shape[1:3]) != self.target_size:
            x = ops.image.resize(x, self.target_size, interpolation=self.interpolation, antialias=True)
        return x

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
            }
        )
        return config
