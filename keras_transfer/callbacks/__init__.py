"""keras_transfer.callbacks."""

from keras_transfer.callbacks.linear_probe_callback import LinearProbeCallback  # noqa: F401
from keras_transfer.callbacks.gradient_reversal_schedule import GradientReversalSchedule  # noqa: F401
from keras_transfer.callbacks.gradient_reversal_schedule import ganin_factor  # noqa: F401
