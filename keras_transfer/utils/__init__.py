"""Internal helpers shared across keras_transfer."""
