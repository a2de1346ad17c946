"""keras_transfer: transfer learning for Keras 3."""

__version__ = "0.1.0"

from keras_transfer import augment  # noqa: E402,F401
from keras_transfer import callbacks  # noqa: E402,F401
from keras_transfer import datasets  # noqa: E402,F401
from keras_transfer import layers  # noqa: E402,F401
from keras_transfer import losses  # noqa: E402,F401
from keras_transfer import models  # noqa: E402,F401
from keras_transfer import ops  # noqa: E402,F401
from keras_transfer import optimizers  # noqa: E402,F401
from keras_transfer import recipes  # noqa: E402,F401
from keras_transfer import schedules  # noqa: E402,F401
