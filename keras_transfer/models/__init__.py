"""keras_transfer.models: `keras.Model` subclasses for transfer learning."""

from keras_transfer.models.anchored_fine_tuning import AnchoredFineTuning
from keras_transfer.models.barlow_twins import BarlowTwins
from keras_transfer.models.black_box_learner import BlackBoxLearner
from keras_transfer.models.byol import BYOL
from keras_transfer.models.clip import CLIP
from keras_transfer.models.dann import DANN
from keras_transfer.models.deep_coral import DeepCORAL
from keras_transfer.models.denoising_autoencoder import DenoisingAutoencoder
from keras_transfer.models.dino import DINO
from keras_transfer.models.jigsaw_puzzle import JigsawPuzzle
from keras_transfer.models.knowledge_distiller import KnowledgeDistiller
from keras_transfer.models.learning_without_forgetting import LearningWithoutForgetting
from keras_transfer.models.masked_imputation import MaskedImputation
from keras_transfer.models.masked_language_model import MaskedLanguageModel
from keras_transfer.models.meta_model import MetaModel
from keras_transfer.models.moco import MoCo
from keras_transfer.models.multi_task_model import MultiTaskModel
from keras_transfer.models.proto_net import ProtoNet
from keras_transfer.models.relative_patch_position import RelativePatchPosition
from keras_transfer.models.rotation_prediction import RotationPrediction
from keras_transfer.models.simclr import SimCLR
from keras_transfer.models.simsiam import SimSiam
from keras_transfer.models.source_only import SourceOnly
from keras_transfer.models.tent import TENT
from keras_transfer.models.vicreg import VICReg

# Moved to keras_transfer.recipes (they are functions, not models); re-exported here for one
# release so that `from keras_transfer.models import wise_ft` keeps working.
from keras_transfer.recipes.retrieval import retrieval_recall
from keras_transfer.recipes.wise_ft import wise_ft
from keras_transfer.recipes.zero_shot import build_zero_shot_classifier
from keras_transfer.recipes.zero_shot import class_text_embeddings
from keras_transfer.recipes.zero_shot import export_zero_shot_classifier
