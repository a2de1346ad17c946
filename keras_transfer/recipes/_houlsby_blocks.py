"""`add_adapters(kind="houlsby")`: keras-hub TransformerEncoder blocks -> HoulsbyTransformerEncoder."""

from keras_transfer.layers import houlsby_transformer_encoder
from keras_transfer.layers.houlsby_transformer_encoder import HoulsbyTransformerEncoder
from keras_transfer.utils import model_graph


def check_houlsby_targets(matched, bottleneck_dim):
    """Raises unless every matched layer is a plain, built keras-hub TransformerEncoder."""
    keras_hub = houlsby_transformer_encoder.keras_hub
    if keras_hub is None:
        raise ValueError(
            "kind='houlsby' needs keras-hub (it replaces keras_hub.layers.TransformerEncoder blocks). "
            "Received: keras-hub is not installed. Run `pip install keras-hub`."
        )
    for path, layer in matched:
        if isinstance(layer, HoulsbyTransformerEncoder):
            raise ValueError(
                f"`targets` must select blocks without adapters for kind='houlsby'. Received: layer "
                f"'{path}' is already a HoulsbyTransformerEncoder."
            )
        if type(layer) is not keras_hub.layers.TransformerEncoder:
            raise ValueError(
                "`targets` must select keras_hub.layers.TransformerEncoder blocks for kind='houlsby' "
                f"(subclasses override the block's call). Received: layer '{path}' of type "
                f"{type(layer).__name__}. Target keras_hub.layers.TransformerEncoder, or use "
                "kind='bottleneck' to put one adapter after other layers."
            )
        nodes = model_graph.inbound_nodes(layer)
        if not nodes:
            raise ValueError(f"Layer '{path}' is not connected to the model graph.")
        features = nodes[0].input_tensors[0].shape[-1]
        if bottleneck_dim > features:
            raise ValueError(
                f"`bottleneck_dim` must be at most the hidden size of every block. Received: "
                f"bottleneck_dim={bottleneck_dim} for block '{path}' with hidden size {features}. "
                "Lower bottleneck_dim."
            )


def houlsby_block(layer, options, train_normalization):
    """An unbuilt HoulsbyTransformerEncoder with `layer`'s configuration and the adapter options."""
    return HoulsbyTransformerEncoder(
        **layer.get_config(),
        bottleneck_dim=options["bottleneck_dim"],
        adapter_activation=options["activation"],
        adapter_use_layer_norm=options["use_layer_norm"],
        adapter_init_scale=options["init_scale"],
        base_trainable="layer_norms" if train_normalization else "none",
    )


def copy_houlsby_weights(pairs, target_ids):
    """Loads each replaced block's pretrained weights into its Houlsby clone; True per handled pair."""
    handled = set()
    for new, orig in pairs:
        if id(orig) in target_ids and isinstance(new, HoulsbyTransformerEncoder):
            new.load_encoder_weights(orig)
            new.apply_base_trainable()
            handled.add(id(new))
    return handled


def keep_houlsby_training(new, orig, target_ids=()):
    """Copies the trainable flags of an earlier Houlsby block (and its sublayers) to its clone.

    Returns False when `orig` is not a Houlsby block; raises when a target lies inside it.
    """
    if not isinstance(orig, HoulsbyTransformerEncoder):
        return False
    pairs = model_graph.paired_sublayers(new, orig)
    inside = [original.name for _, original in pairs[1:] if id(original) in target_ids]
    if inside:
        raise ValueError(
            f"`targets` must not select layers inside HoulsbyTransformerEncoder '{orig.name}'. Received: "
            f"{inside}. Its sublayers' trainable flags follow `base_trainable`; LoRA and Houlsby adapters "
            "do not combine in one block."
        )
    for sub, original in pairs:
        sub.trainable = original.trainable
    return True


def is_houlsby_block(layer):
    """Whether `layer` is a HoulsbyTransformerEncoder."""
    return isinstance(layer, HoulsbyTransformerEncoder)


def plain_encoder(layer):
    """An unbuilt keras-hub TransformerEncoder with a Houlsby block's base configuration."""
    keras_hub = houlsby_transformer_encoder.keras_hub
    return keras_hub.layers.TransformerEncoder.from_config(layer.encoder_config())


def fold_houlsby_weights(new, orig):
    """Sets the plain clone `new` to `orig`'s weights with its linear adapters folded in."""
    new.set_weights(orig.merged_encoder_weights())
    new.trainable = orig.trainable
