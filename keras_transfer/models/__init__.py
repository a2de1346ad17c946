"""keras_transfer.models."""

from keras_transfer.models.denoising_autoencoder import DenoisingAutoencoder  # noqa: F401
from keras_transfer.models.masked_imputation import MaskedImputation  # noqa: F401
from keras_transfer.models.moco import MoCo  # noqa: F401
from keras_transfer.models.rotation_prediction import RotationPrediction  # noqa: F401
from keras_transfer.models.simclr import SimCLR  # noqa: F401
