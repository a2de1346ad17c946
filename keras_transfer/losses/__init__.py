"""keras_transfer.losses."""

from keras_transfer.losses.clip_loss import CLIPLoss
from keras_transfer.losses.clip_loss import clip_loss
