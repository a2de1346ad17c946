"""keras_transfer.ops: composable functions behind the models."""

from keras_transfer.ops.maml import dense_chain_forward  # noqa: F401
from keras_transfer.ops.maml import dense_chain_plan  # noqa: F401
from keras_transfer.ops.maml import exact_moments  # noqa: F401
from keras_transfer.ops.maml import maml_inner_loop  # noqa: F401
from keras_transfer.ops.maml import maml_inner_update  # noqa: F401
from keras_transfer.ops.maml import patch_batch_normalization  # noqa: F401
