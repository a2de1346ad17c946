"""keras_transfer.models."""

from keras_transfer.models.clip import CLIP
