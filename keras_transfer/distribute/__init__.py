"""keras_transfer.distribute: training under `tf.distribute` strategies that Keras's `fit` cannot run."""

from keras_transfer.distribute.cluster import is_chief  # noqa: F401
from keras_transfer.distribute.runner import fit  # noqa: F401
