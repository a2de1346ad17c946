"""Fresh names for the layers a recipe adds to a cloned model (adapters, prompt tokens)."""

from keras_transfer.utils import model_graph


class LayerNames:
    """The names of a model's layers and sub-models, and fresh names beside them.

    Args:
        model: a `keras.Model`; the names of its leaf layers and of its sub-models count as taken.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")])
    >>> names = LayerNames(model)
    >>> names.unique("dense"), names.unique("dense"), names.unique("adapter")
    ('dense_2', 'dense_3', 'adapter')
    """

    def __init__(self, model):
        self.used = {path.rsplit("/", 1)[-1] for path, _ in model_graph.iter_leaf_layers(model)}
        self.used |= {sub.name for sub in model_graph.iter_models(model)}

    def unique(self, name):
        """`name`, or the first of `name_2`, `name_3`, ... not taken; it is taken from then on."""
        candidate, index = name, 1
        while candidate in self.used:
            index += 1
            candidate = f"{name}_{index}"
        self.used.add(candidate)
        return candidate
