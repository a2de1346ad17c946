"""keras_transfer.ops: composable functions behind the models."""

from keras_transfer.ops.maml import dense_chain_forward
from keras_transfer.ops.maml import dense_chain_plan
from keras_transfer.ops.maml import exact_moments
from keras_transfer.ops.maml import maml_inner_loop
from keras_transfer.ops.maml import maml_inner_update
from keras_transfer.ops.maml import patch_batch_normalization
