"""keras_transfer.schedules: learning-rate schedules (`keras.optimizers.schedules`) and curriculum pacing."""

from keras_transfer.schedules.fixed_exponential_pacing import FixedExponentialPacing
from keras_transfer.schedules.inverse_power_decay import InversePowerDecay
from keras_transfer.schedules.linear_pacing import LinearPacing
from keras_transfer.schedules.pacing_function import PacingFunction
from keras_transfer.schedules.step_pacing import StepPacing
