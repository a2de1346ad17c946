"""Fine-tuning recipes over keras.applications backbones."""

from keras_transfer.recipes.backbones import BACKBONES
from keras_transfer.recipes.backbones import BackboneSpec
from keras_transfer.recipes.backbones import available_backbones
from keras_transfer.recipes.backbones import backbone_blocks
from keras_transfer.recipes.backbones import get_spec
from keras_transfer.recipes.backbones import load_backbone
from keras_transfer.recipes.classifier import build_classifier
from keras_transfer.recipes.classifier import feature_extractor
from keras_transfer.recipes.classifier import get_backbone
from keras_transfer.recipes.classifier import get_head
from keras_transfer.recipes.classifier import replace_head
from keras_transfer.recipes.fine_tune import compile_for_fine_tuning
from keras_transfer.recipes.fine_tune import evaluate_accuracy
from keras_transfer.recipes.fine_tune import fine_tune
from keras_transfer.recipes.fine_tune import learning_rate_multipliers
from keras_transfer.recipes.freezing import freeze_backbone
from keras_transfer.recipes.freezing import select_blocks
from keras_transfer.recipes.freezing import trainable_report
from keras_transfer.recipes.freezing import unfreeze_backbone
from keras_transfer.recipes.linear_probe import extract_features
from keras_transfer.recipes.linear_probe import fit_logistic_regression
from keras_transfer.recipes.linear_probe import linear_probe
