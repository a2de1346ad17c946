"""keras_transfer.models."""

from keras_transfer.models.denoising_autoencoder import DenoisingAutoencoder  # noqa: F401
from keras_transfer.models.masked_imputation import MaskedImputation  # noqa: F401
from keras_transfer.models.moco import MoCo  # noqa: F401
from keras_transfer.models.rotation_prediction import RotationPrediction  # noqa: F401
from keras_transfer.models.simclr import SimCLR  # noqa: F401
from keras_transfer.models.clip import CLIP
from keras_transfer.models.retrieval import retrieval_recall
from keras_transfer.models.wise_ft import wise_ft
from keras_transfer.models.zero_shot import build_zero_shot_classifier
from keras_transfer.models.zero_shot import class_text_embeddings
from keras_transfer.models.zero_shot import export_zero_shot_classifier
from keras_transfer.models.dann import DANN  # noqa: F401
from keras_transfer.models.deep_coral import DeepCORAL  # noqa: F401
from keras_transfer.models.source_only import SourceOnly  # noqa: F401
from keras_transfer.models.black_box_learner import BlackBoxLearner  # noqa: F401
from keras_transfer.models.meta_model import MetaModel  # noqa: F401
from keras_transfer.models.proto_net import ProtoNet  # noqa: F401
