"""keras_transfer.models."""

from keras_transfer.models.dann import DANN  # noqa: F401
from keras_transfer.models.deep_coral import DeepCORAL  # noqa: F401
from keras_transfer.models.source_only import SourceOnly  # noqa: F401
