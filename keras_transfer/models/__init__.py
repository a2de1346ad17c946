"""keras_transfer.models."""

from keras_transfer.models.black_box_learner import BlackBoxLearner  # noqa: F401
from keras_transfer.models.meta_model import MetaModel  # noqa: F401
from keras_transfer.models.proto_net import ProtoNet  # noqa: F401
