"""keras_transfer.augment."""
