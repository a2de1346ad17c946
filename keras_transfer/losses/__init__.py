"""keras_transfer.losses."""

from keras_transfer.losses.barlow_twins import barlow_twins_loss
from keras_transfer.losses.byol_loss import BYOLLoss
from keras_transfer.losses.byol_loss import byol_loss
from keras_transfer.losses.clip_loss import CLIPLoss
from keras_transfer.losses.clip_loss import clip_loss
from keras_transfer.losses.coral import CORALLoss
from keras_transfer.losses.coral import coral_loss
from keras_transfer.losses.dino_loss import dino_loss
from keras_transfer.losses.info_nce import InfoNCE
from keras_transfer.losses.info_nce import info_nce
from keras_transfer.losses.masked_token_loss import MaskedTokenLoss
from keras_transfer.losses.masked_token_loss import masked_token_loss
from keras_transfer.losses.nt_xent import NTXent
from keras_transfer.losses.nt_xent import nt_xent
from keras_transfer.losses.projected_feature_distillation import ProjectedFeatureDistillation
from keras_transfer.losses.siglip_loss import SigLIPLoss
from keras_transfer.losses.siglip_loss import siglip_loss
from keras_transfer.losses.simsiam_loss import SimSiamLoss
from keras_transfer.losses.simsiam_loss import simsiam_loss
from keras_transfer.losses.soft_target_distillation import SoftTargetDistillation
from keras_transfer.losses.vicreg import vicreg_loss
