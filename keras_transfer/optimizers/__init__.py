"""keras_transfer.optimizers."""

from keras_transfer.optimizers.discriminative import discriminative_optimizer
