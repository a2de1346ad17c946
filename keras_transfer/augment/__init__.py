"""keras_transfer.augment."""

from keras_transfer.augment.simclr_augmentation import SimCLRAugmentation
from keras_transfer.augment.simclr_dataset import simclr_dataset
