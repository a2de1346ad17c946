"""keras_transfer.layers."""
