"""keras_transfer.callbacks."""

from keras_transfer.callbacks.linear_probe_callback import LinearProbeCallback  # noqa: F401
