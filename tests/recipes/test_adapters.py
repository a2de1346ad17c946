from keras_transfer.recipes import adapter_insertion
from keras_transfer.recipes import adapter_weights
from keras_transfer.recipes import adapters
from keras_transfer.recipes import parameter_report
from keras_transfer.utils import model_graph
from tests.test_case import TestCase


class ReExportTest(TestCase):
    """`keras_transfer.recipes.adapters.<name>` keeps working for the names it held."""

    def test_public_names(self):
        homes = {
            adapter_insertion: ["ADAPTER_KINDS", "NORMALIZATION_LAYERS", "add_adapters"],
            adapter_weights: [
                "get_adapter_weights",
                "set_adapter_weights",
                "save_adapter_weights",
                "load_adapter_weights",
            ],
            parameter_report: ["adapter_parameter_report", "format_parameter_report"],
            model_graph: [
                "iter_leaf_layers",
                "iter_sublayers",
                "iter_all_layers",
                "find_layers",
                "clone_graph",
                "copy_weights",
            ],
        }
        for module, names in homes.items():
            for name in names:
                self.assertIs(getattr(adapters, name), getattr(module, name), name)
