"""keras_transfer.models."""

from keras_transfer.models.moco import MoCo  # noqa: F401
from keras_transfer.models.simclr import SimCLR  # noqa: F401
