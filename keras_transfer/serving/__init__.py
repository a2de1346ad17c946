"""Exports for TF Serving beyond `model.export()`: encoded images in, class names out."""

from keras_transfer.serving.image_classifier import decode_images
from keras_transfer.serving.image_classifier import export_image_classifier
