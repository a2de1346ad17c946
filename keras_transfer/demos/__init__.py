"""keras_transfer.demos."""
