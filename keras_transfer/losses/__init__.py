"""keras_transfer.losses."""

from keras_transfer.losses.coral import CORALLoss  # noqa: F401
from keras_transfer.losses.coral import coral_loss  # noqa: F401
