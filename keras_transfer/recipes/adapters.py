"""Adapters (bottleneck, 1x1 conv in series / parallel, Keras LoRA, DoRA) on a built model.

The adapter recipes live in three modules, re-exported here:

- `adapter_insertion`: `add_adapters` (the pretrained model stays untouched).
- `adapter_weights`: one small weight file per task (`get_adapter_weights`,
  `set_adapter_weights`, `save_adapter_weights`, `load_adapter_weights`).
- `parameter_report`: what trains (`adapter_parameter_report`, `format_parameter_report`).

The layer walkers and graph cloning they use are in `keras_transfer.utils.model_graph`.
"""

from keras_transfer.recipes.adapter_insertion import ADAPTER_KINDS  # noqa: F401
from keras_transfer.recipes.adapter_insertion import NORMALIZATION_LAYERS  # noqa: F401
from keras_transfer.recipes.adapter_insertion import add_adapters  # noqa: F401
from keras_transfer.recipes.adapter_weights import get_adapter_weights  # noqa: F401
from keras_transfer.recipes.adapter_weights import load_adapter_weights  # noqa: F401
from keras_transfer.recipes.adapter_weights import save_adapter_weights  # noqa: F401
from keras_transfer.recipes.adapter_weights import set_adapter_weights  # noqa: F401
from keras_transfer.recipes.parameter_report import adapter_parameter_report  # noqa: F401
from keras_transfer.recipes.parameter_report import format_parameter_report  # noqa: F401
from keras_transfer.utils.model_graph import clone_graph  # noqa: F401
from keras_transfer.utils.model_graph import copy_weights  # noqa: F401
from keras_transfer.utils.model_graph import find_layers  # noqa: F401
from keras_transfer.utils.model_graph import iter_all_layers  # noqa: F401
from keras_transfer.utils.model_graph import iter_leaf_layers  # noqa: F401
from keras_transfer.utils.model_graph import iter_sublayers  # noqa: F401
