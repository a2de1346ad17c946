"""Fine-tuning recipes over keras.applications backbones."""

from keras_transfer.recipes.adapter_folding import fold_adapters  # noqa: F401
from keras_transfer.recipes.adapter_folding import get_lora_factors  # noqa: F401
from keras_transfer.recipes.adapter_folding import merge_lora  # noqa: F401
from keras_transfer.recipes.adapter_folding import unmerge_lora  # noqa: F401
from keras_transfer.recipes.adapters import add_adapters  # noqa: F401
from keras_transfer.recipes.adapters import adapter_parameter_report  # noqa: F401
from keras_transfer.recipes.adapters import format_parameter_report  # noqa: F401
from keras_transfer.recipes.adapters import get_adapter_weights  # noqa: F401
from keras_transfer.recipes.adapters import load_adapter_weights  # noqa: F401
from keras_transfer.recipes.adapters import save_adapter_weights  # noqa: F401
from keras_transfer.recipes.adapters import set_adapter_weights  # noqa: F401
