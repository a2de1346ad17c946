"""keras_transfer.models."""

from keras_transfer.models.simclr import SimCLR  # noqa: F401
