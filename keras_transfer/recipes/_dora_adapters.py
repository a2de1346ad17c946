"""DoRA in a cloned model: which layers take it, the DoRA clones, enabling it on targets.

`add_adapters(kind="dora")` and `unmerge_dora` share these. Top-level targets (a `Dense`,
`EinsumDense` or `Conv2D` in the functional graph) are cloned as `DoRADense` /
`DoRAEinsumDense` / `DoRAConv2D`, which `.keras` files restore with their factors. Targets
nested in a composite layer (the query / key / value / output projections Keras builds
inside `MultiHeadAttention.build`, a keras-hub block's feed-forward `Dense`) are out of
reach of `clone_model`: they are converted in place to the DoRA class of their type, as
Keras's own `enable_lora` turns LoRA on in place, and, as with Keras LoRA, write their
merged kernel to `.keras` files (the parent reloads them as plain Keras layers).
"""

import keras

from keras_transfer.layers._dora_kernel import check_dora_rank
from keras_transfer.layers._dora_kernel import einsum_kernel_axes
from keras_transfer.layers.dora_conv2d import DoRAConv2D
from keras_transfer.layers.dora_dense import DoRADense
from keras_transfer.layers.dora_einsum_dense import DoRAEinsumDense
from keras_transfer.utils import model_graph

DORA_CLASSES = {
    keras.layers.Dense: DoRADense,
    keras.layers.EinsumDense: DoRAEinsumDense,
    keras.layers.Conv2D: DoRAConv2D,
}
PLAIN_CLASSES = {dora: plain for plain, dora in DORA_CLASSES.items()}
DORA_CONFIG_KEYS = ("dora_rank", "dora_alpha", "dora_detach_norm")


def dora_layers(layer):
    """The DoRA-enabled layers among `layer` and its nested sublayers."""
    return [sub for sub in model_graph.layer_and_sublayers(layer) if getattr(sub, "dora_enabled", False)]


def train_only_factors(layer):
    """Marks every trainable variable of `layer` but its LoRA / DoRA factors as non-trainable."""
    for variable in layer.trainable_weights:
        if "lora" not in variable.name and "dora" not in variable.name:
            variable.trainable = False


def kernel_axes(layer):
    """`(input_axes, output_axes)` of a plain Dense / EinsumDense / Conv2D kernel."""
    if isinstance(layer, keras.layers.EinsumDense):
        return einsum_kernel_axes(layer.equation, len(model_graph.base_weight(layer).shape))
    if isinstance(layer, keras.layers.Conv2D):
        return (0, 1, 2), (3,)
    return (0,), (1,)


def check_dora_targets(matched, rank):
    """Raises a ValueError for a target DoRA cannot take or a rank its kernel cannot hold."""
    for path, layer in matched:
        if isinstance(layer, keras.Model):
            continue
        if type(layer) not in DORA_CLASSES or getattr(layer, "lora_enabled", False):
            raise ValueError(
                "`targets` must select keras.layers.Dense, EinsumDense or Conv2D layers without LoRA "
                "(attention projections included, e.g. targets=keras.layers.EinsumDense) for "
                f"kind='dora'. Received: layer '{path}' of type {type(layer).__name__}"
                + (" with LoRA enabled" if getattr(layer, "lora_enabled", False) else "")
            )
        shape = tuple(model_graph.base_weight(layer).shape)
        check_dora_rank(rank, shape, *kernel_axes(layer), where=f" for layer '{path}'")


def dora_clone_function(target_ids, fallback):
    """A `clone_layer` that clones top-level targets as their DoRA class (DoRA not yet enabled)."""

    def clone_layer(layer):
        if id(layer) in target_ids and type(layer) in DORA_CLASSES:
            return DORA_CLASSES[type(layer)].from_config(layer.get_config())
        return fallback(layer)

    return clone_layer


def enable_dora(new, orig, targets):
    """DoRA on the clone `new` of `orig` or on its nested targets; only the factors train.

    Args:
        new: the clone (a DoRA class for a top-level target, see `dora_clone_function`).
        orig: the original layer, whose weights `new` holds.
        targets: `{id(original target): (rank, alpha, detach_norm)}`.

    Returns:
        `[(new_sublayer, original_sublayer)]` of the layers DoRA was enabled on.
    """
    couples = model_graph.paired_sublayers(new, orig)
    hits = [(n, o) for n, o in couples if id(o) in targets]
    if not hits:
        return []
    new.trainable = True
    train_only_factors(new)  # also the variables `new` holds itself
    for sub, _ in couples[1:]:
        sub.trainable = False
    for sub, orig_sub in hits:
        if sub is new:
            sub.set_weights(orig_sub.get_weights())  # the DoRA clone has the plain layer's variables
        else:
            sub.__class__ = DORA_CLASSES[type(sub)]  # built inside its parent: converted in place
            sub.init_dora(None, None, False)
            sub.dora_merged_save = True
        rank, alpha, detach = targets[id(orig_sub)]
        sub.trainable = True
        sub.enable_dora(rank, alpha, detach)
        train_only_factors(sub)
    return hits
