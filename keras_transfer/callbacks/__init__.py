"""keras_transfer.callbacks."""

from keras_transfer.callbacks.gradient_reversal_schedule import GradientReversalSchedule
from keras_transfer.callbacks.gradient_reversal_schedule import ganin_factor
from keras_transfer.callbacks.linear_probe_callback import LinearProbeCallback
