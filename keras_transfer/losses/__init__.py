"""keras_transfer.losses."""
