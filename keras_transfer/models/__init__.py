"""keras_transfer.models."""

from keras_transfer.models.meta_model import MetaModel  # noqa: F401
