"""keras_transfer.datasets."""

from keras_transfer.datasets.sinusoid import sinusoid_task_dataset  # noqa: F401
from keras_transfer.datasets.sinusoid import sinusoid_tasks  # noqa: F401
