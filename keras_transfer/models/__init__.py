"""keras_transfer.models."""
