"""keras_transfer.schedules: learning-rate schedules (`keras.optimizers.schedules`)."""

from keras_transfer.schedules.inverse_power_decay import InversePowerDecay
