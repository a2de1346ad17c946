"""keras_transfer.augment."""

from keras_transfer.augment.simclr_augmentation import SimCLRAugmentation  # noqa: F401
from keras_transfer.augment.simclr_dataset import simclr_dataset  # noqa: F401
