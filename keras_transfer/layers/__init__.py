"""keras_transfer.layers."""

from keras_transfer.layers.backbone_preprocessing import BackbonePreprocessing
from keras_transfer.layers.bottleneck_adapter import BottleneckAdapter
from keras_transfer.layers.conv_adapter import ConvAdapter
from keras_transfer.layers.gradient_reversal import GradientReversal  # noqa: F401
from keras_transfer.layers.gradient_reversal import reverse_gradient  # noqa: F401
from keras_transfer.layers.image_input_adapter import ImageInputAdapter
from keras_transfer.layers.sequence_pooling import SequencePooling
from keras_transfer.layers.text_transformer_encoder import TextTransformerEncoder
from keras_transfer.layers.word_tokenizer import word_tokenizer
from keras_transfer.layers.zero_shot_head import ZeroShotHead
