"""keras_transfer: transfer learning for Keras 3."""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# The `keras-transfer` console script imports this package before `cli.main` runs: quiet TensorFlow's
# C++ warnings for it here, before TensorFlow is imported (library users keep their own setting).
if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "keras-transfer":
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_transfer import cli as _cli  # imports only the standard library: safe before TensorFlow

    _cli.quiet_native_stderr()  # filters TensorFlow's start-up lines from this process's stderr

from keras_transfer import augment  # noqa: E402,F401
from keras_transfer import callbacks  # noqa: E402,F401
from keras_transfer import datasets  # noqa: E402,F401
from keras_transfer import distribute  # noqa: E402,F401
from keras_transfer import layers  # noqa: E402,F401
from keras_transfer import losses  # noqa: E402,F401
from keras_transfer import models  # noqa: E402,F401
from keras_transfer import ops  # noqa: E402,F401
from keras_transfer import optimizers  # noqa: E402,F401
from keras_transfer import recipes  # noqa: E402,F401
from keras_transfer import schedules  # noqa: E402,F401
from keras_transfer import serving  # noqa: E402,F401
