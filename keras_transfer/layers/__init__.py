"""keras_transfer.layers."""

from keras_transfer.layers.gradient_reversal import GradientReversal  # noqa: F401
from keras_transfer.layers.gradient_reversal import reverse_gradient  # noqa: F401
