"""`BackbonePreprocessing`: keras.applications' `preprocess_input` functions as one serialisable layer."""

import keras
from keras import ops

from keras_transfer.utils import validation

# The ImageNet channel statistics keras.applications uses ("caffe" in BGR order, "torch" in RGB).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

MODES = ("tf", "caffe", "torch", "unit", "none")


@keras.saving.register_keras_serializable(package="keras_transfer")
class BackbonePreprocessing(keras.layers.Layer):
    """A backbone family's `preprocess_input` as a serialisable layer.

    keras.applications' `preprocess_input` functions are plain functions, so a model
    that calls them cannot be saved to `.keras` and exported as one graph. This
    layer reproduces them on RGB images whose values span `value_range`:

    - "tf": scale to [-1, 1] (MobileNet/V2, ResNetV2, Xception, Inception, NASNet);
    - "caffe": RGB -> BGR, subtract the ImageNet mean (ResNet, VGG);
    - "torch": scale to [0, 1], normalise by the ImageNet mean/std (DenseNet);
    - "unit": scale to [0, 1] (keras_transfer's own small CNN);
    - "none": map to [0, 255] only (MobileNetV3, EfficientNet/V2, ConvNeXt preprocess inside).

    Args:
        mode: one of "tf", "caffe", "torch", "unit", "none".
        value_range: (low, high) of the input pixels, e.g. (0, 255) or (0, 1).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if `mode` is unknown or `value_range` is not a pair with
            high > low.

    Example:

    >>> layer = keras_transfer.layers.BackbonePreprocessing(mode="tf")
    >>> layer(np.array([[[[0.0, 127.5, 255.0]]]], "float32")).numpy()
    array([[[[-1.,  0.,  1.]]]], dtype=float32)
    >>> layer = keras_transfer.layers.BackbonePreprocessing(mode="unit", value_range=(0, 1))
    >>> layer(np.array([[[[0.0, 0.5, 1.0]]]], "float32")).numpy()
    array([[[[0. , 0.5, 1. ]]]], dtype=float32)
    """

    def __init__(self, mode="tf", value_range=(0.0, 255.0), **kwargs):
        super().__init__(**kwargs)
        validation.check_one_of("mode", mode, MODES)
        if (
            not isinstance(value_range, (tuple, list))
            or len(value_range) != 2
            or not float(value_range[1]) > float(value_range[0])
        ):
            raise ValueError(
                f"`value_range` must be a (low, high) pair with high > low. Received: value_range={value_range!r}"
            )
        self.mode = mode
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        low, high = self.value_range
        if (low, high) != (0.0, 255.0):
            x = (x - low) * (255.0 / (high - low))
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "value_range": list(self.value_range)})
        return config
