"""keras-hub ViT layers -> equivalent layers whose saved configs reload.

keras-hub's `ViTPatchingAndEmbedding` and `ViTEncoderBlock` write configs their own
constructors refuse (`num_patches`, `key_dim`), so they cannot be cloned from their
config nor reloaded from a `.keras` file outside a `ViTBackbone`; `ViTEncoder` runs all
blocks inside one layer. `add_visual_prompts` swaps them for `PatchEmbedding` and
`ViTBlock` (same weights and maths).
"""

from keras_transfer.layers.patch_embedding import PatchEmbedding
from keras_transfer.layers.vit_block import ViTBlock


def is_vit_encoder(layer):
    """keras-hub's `ViTEncoder`: all blocks in one layer (`encoder_layers`, `dropout`, `layer_norm`)."""
    return type(layer).__name__ == "ViTEncoder" and all(
        hasattr(layer, name) for name in ("encoder_layers", "dropout", "layer_norm")
    )


def is_vit_embedding(layer):
    """keras-hub's `ViTPatchingAndEmbedding`."""
    return type(layer).__name__ == "ViTPatchingAndEmbedding" and hasattr(layer, "patch_embedding")


def is_vit_block(layer):
    """keras-hub's `ViTEncoderBlock`."""
    return type(layer).__name__ == "ViTEncoderBlock" and hasattr(layer, "mlp")


def convert_layer(layer, name=None):
    """`(new layer, its weights)` for a keras-hub ViT embedding or block, else None."""
    name = name or layer.name
    if is_vit_embedding(layer):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(
                "`model` must be a channels-last keras-hub ViT for add_visual_prompts. Received: "
                f"layer '{layer.name}' with data_format={layer.data_format!r}"
            )
        new = PatchEmbedding(
            layer.patch_size,
            layer.hidden_dim,
            use_class_token=bool(layer.use_class_token),
            use_patch_bias=bool(getattr(layer, "use_patch_bias", True)),
            dtype=layer.dtype_policy,
            name=name,
        )
        weights = layer.get_weights()  # [class token], kernel, [bias], positions
        head = int(bool(layer.use_class_token))
        return new, weights[:head] + weights[-1:] + weights[head:-1]
    if is_vit_block(layer):
        new = ViTBlock(
            layer.num_heads,
            layer.mlp_dim,
            dropout=layer.dropout_rate,
            attention_dropout=layer.attention_dropout,
            layer_norm_epsilon=layer.layer_norm_epsilon,
            use_mha_bias=bool(layer.use_mha_bias),
            use_mlp_bias=bool(layer.use_mlp_bias),
            dtype=layer.dtype_policy,
            name=name,
        )
        return new, layer.get_weights()  # same order: ln_1, mha, ln_2, mlp dense_1, dense_2
    return None
