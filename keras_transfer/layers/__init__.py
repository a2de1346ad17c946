"""keras_transfer.layers."""

from keras_transfer.layers.backbone_preprocessing import BackbonePreprocessing
from keras_transfer.layers.image_input_adapter import ImageInputAdapter
