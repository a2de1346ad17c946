"""keras_transfer.layers."""

from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter  # noqa: F401
from keras_transfer.layers.conv_adapter import ConvAdapter  # noqa: F401
