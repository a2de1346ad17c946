"""Visual prompt tuning (VPT): learned prompt tokens in a frozen ViT, shallow or deep.

The pretrained model stays untouched: `add_visual_prompts` rebuilds its functional graph
with `model_graph.clone_graph` (Keras's own graph re-execution, nested backbones
included), puts `VisualPrompts` layers before the transformer blocks, copies every
original weight and freezes everything but the prompts and the head. keras-hub's
`ViTBackbone` runs all its blocks inside one `ViTEncoder` layer; the copy calls that
layer's blocks, dropout and final LayerNorm one by one so that prompts can sit between
the blocks, as equivalent layers whose configs reload (`_vit_conversion`).
"""

from keras_transfer.layers.visual_prompts import VisualPrompts
from keras_transfer.recipes._vit_conversion import convert_layer
from keras_transfer.recipes._vit_conversion import is_vit_embedding
from keras_transfer.recipes._vit_conversion import is_vit_encoder
from keras_transfer.recipes.adapter_insertion import head_layer_ids
from keras_transfer.utils import model_graph
from keras_transfer.utils import validation
from keras_transfer.utils.layer_names import LayerNames

BLOCK_CLASS_NAMES = ("ViTBlock", "ViTEncoderBlock", "TransformerEncoder", "HoulsbyTransformerEncoder")


def add_visual_prompts(
    model, num_prompts=10, deep=False, *, blocks="auto", insert_at=None, trainable_layers="auto", seed=None
):
    """Returns a copy of `model` with learned prompt tokens before its transformer blocks, the rest frozen.

    VPT-shallow (`deep=False`): `num_prompts` tokens are inserted after the class token
    at the input of the first block, `[x_cls, E] -> [x_cls, P, E]`, and travel through
    the network. VPT-deep (`deep=True`): every block gets its own fresh prompts; the
    previous block's prompt outputs are discarded. After the last block the prompt
    positions are dropped, so the copy's outputs have the original shape and a head
    reading the class token (or any head) works unchanged. Every original weight is
    copied and frozen; the prompts (initialised `U(-a, a)`, `a = sqrt(6 / (patch_dim +
    dim))`) and the head train. The prompts get no position embedding.

    Args:
        model: a built Functional (or Sequential) model: a keras-hub `ViTBackbone`, a
            classifier around one, or a model with a chain of transformer block layers
            (keras-hub `TransformerEncoder`, your own) over a `(batch, tokens, dim)`
            sequence. It is not modified.
        num_prompts: positive int, prompt tokens per block input (the paper's `p`).
        deep: False (VPT-shallow) or True (VPT-deep).
        blocks: the transformer blocks: "auto" (keras-hub `ViTEncoder` /
            `ViTEncoderBlock` / `TransformerEncoder` layers and `HoulsbyTransformerEncoder`)
            or a layer-name regex, layer class, predicate or list of these, for blocks of
            your own. Each block must take one `(batch, tokens, dim)` tensor, return one of
            the same shape, and be called once, one after the other.
        insert_at: tokens kept before the prompts: None (1, after the class token; 0 for a
            keras-hub ViT built with `use_class_token=False`) or a non-negative int.
        trainable_layers: the head: "auto" (layers named "head", else the last layer with
            weights on each output path after the blocks), None (only the prompts train) or
            patterns / classes like `blocks`.
        seed: seed of the prompts' initialisation (block `i` uses `seed + i`).

    Returns:
        A new functional `keras.Model` (compile it before `fit`).

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model, `num_prompts`,
            `deep`, `insert_at` or `seed` is invalid, no transformer block is found, or a
            block does not take a single `(batch, tokens, dim)` sequence.

    Reference:
        Jia, Tang, Chen, Cardie, Belongie, Hariharan & Lim, "Visual Prompt Tuning", ECCV 2022
        (§3.2, eqs. 4-6).

    Example:

    A small ViT of `PatchEmbedding` and `ViTBlock` layers (a keras-hub `ViTBackbone` in
    place of the three middle lines works the same):

    >>> images = keras.Input((8, 8, 1))
    >>> x = keras_transfer.layers.PatchEmbedding(patch_size=4, hidden_dim=8)(images)
    >>> x = keras_transfer.layers.ViTBlock(num_heads=2, mlp_dim=16, name="block_1")(x)
    >>> x = keras_transfer.layers.ViTBlock(num_heads=2, mlp_dim=16, name="block_2")(x)
    >>> logits = keras.layers.Dense(3, name="head")(x[:, 0])
    >>> prompted = keras_transfer.recipes.add_visual_prompts(keras.Model(images, logits), 4, deep=True)
    >>> [w.path for w in prompted.trainable_weights]
    ['block_1_prompts/prompts', 'block_2_prompts/prompts', 'head/kernel', 'head/bias']
    >>> tuple(prompted(np.zeros((2, 8, 8, 1), "float32")).shape)
    (2, 3)
    """
    model_graph.check_graph_model(model)
    num_prompts = validation.check_positive_int("num_prompts", num_prompts, "Pass e.g. num_prompts=10.")
    if not isinstance(deep, bool):
        raise ValueError(f"`deep` must be True (VPT-deep) or False (VPT-shallow). Received: deep={deep!r}")
    if seed is not None:
        seed = validation.check_non_negative_int("seed", seed)
    found = _find_blocks(model, blocks)
    embedding = _vit_embedding(model)
    if insert_at is None:
        insert_at = 0 if embedding is not None and not getattr(embedding, "use_class_token", True) else 1
    insert_at = validation.check_non_negative_int(
        "insert_at", insert_at, "Pass the number of leading tokens kept before the prompts (1: the class token)."
    )
    options = dict(num_prompts=num_prompts, insert_at=insert_at, seed=seed, patch_dim=_patch_dim(embedding), deep=deep)
    inserter = _PromptInserter(model, found, options)
    head_ids = _head_layers(model, trainable_layers, inserter.block_ids)
    new_model, pairs = model_graph.clone_graph(model, clone_layer=inserter.clone_layer, call_layer=inserter.call_layer)
    inserter.check_all_called()
    pairs = [(new, orig) for new, orig in pairs if id(orig) not in inserter.expanded] + inserter.pairs
    for new, orig in pairs:
        weights = inserter.weights.get(id(new))
        if weights is not None:
            new.set_weights(weights)
        elif orig.weights:
            new.set_weights(orig.get_weights())
        new.trainable = id(orig) in head_ids
    return new_model


# --------------------------------------------------------------------------- finding the blocks
def _find_blocks(model, blocks):
    """`[(path, layer)]` of the block layers (ViTEncoder containers included) in graph order."""
    if isinstance(blocks, str) and blocks == "auto":
        found = [
            (path, layer)
            for path, layer in model_graph.iter_leaf_layers(model)
            if is_vit_encoder(layer) or type(layer).__name__ in BLOCK_CLASS_NAMES
        ]
        if not found:
            names = [path for path, _ in model_graph.iter_leaf_layers(model)][:40]
            raise ValueError(
                "`model` must hold transformer blocks over a token sequence (a keras-hub ViTBackbone, "
                "ViTEncoderBlock or TransformerEncoder layers). Received: model "
                f"'{model.name}' with layers {names}. Pass blocks=<regex, class or predicate> "
                "naming your own block layers."
            )
    else:
        found = model_graph.find_layers(model, blocks, "blocks")
    for path, layer in found:
        calls = len(model_graph.inbound_nodes(layer))
        if calls != 1:
            raise ValueError(
                f"`blocks` must be layers called once in the graph. Received: block '{path}' is called "
                f"{calls} times. Rebuild the model with one layer per block."
            )
    return found


def _vit_embedding(model):
    """keras-hub's `ViTPatchingAndEmbedding` in `model` (patch size, channels, class token), or None."""
    for _, layer in model_graph.iter_leaf_layers(model):
        if is_vit_embedding(layer):
            return layer
    return None


def _patch_dim(embedding):
    if embedding is None:
        return None
    size = embedding.patch_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return int(size[0] * size[1] * embedding.num_channels)


def _head_layers(model, trainable_layers, block_ids):
    """`id`s of the layers that train besides the prompts."""
    return head_layer_ids(model, trainable_layers, stop_ids=block_ids)


# --------------------------------------------------------------------------- insertion
def _renamed_clone(layer, name):
    config = layer.get_config()
    config["name"] = name
    return layer.__class__.from_config(config)


class _PromptInserter:
    """The `call_layer` of `clone_graph`: prompts before each block, removal after the last."""

    def __init__(self, model, found, options):
        self.options = options
        self.block_ids = {id(layer) for _, layer in found}
        self.expanded = {id(layer) for _, layer in found if is_vit_encoder(layer)}
        self.total = sum(len(layer.encoder_layers) if is_vit_encoder(layer) else 1 for _, layer in found)
        self.names = LayerNames(model)
        self.index = 0
        self.pairs = []  # (new, orig) of the layers cloned out of a ViTEncoder
        self.weights = {}  # id(new) -> weights of a converted keras-hub layer

    def clone_layer(self, layer, name=None):
        """The `clone_layer` of `clone_graph`: keras-hub ViT layers converted, others from config."""
        converted = convert_layer(layer, name)
        if converted is None:
            return _renamed_clone(layer, name) if name else model_graph.clone_layer_from_config(layer)
        new, weights = converted
        self.weights[id(new)] = weights
        return new

    def call_layer(self, new, orig, *args, **kwargs):
        if id(orig) not in self.block_ids:
            return new(*args, **kwargs)
        if len(args) != 1 or kwargs:
            raise ValueError(
                f"`blocks` must be layers called on one token sequence. Received: block '{orig.name}' is "
                f"called with {len(args)} positional and {sorted(kwargs)} keyword arguments."
            )
        if id(orig) not in self.expanded:
            return self.call_block(new, orig.name, args[0])
        x = self.clone_and_call(orig.dropout, f"{orig.name}_{orig.dropout.name}", args[0])
        for block in orig.encoder_layers:
            clone = self.clone_layer(block, self.names.unique(f"{orig.name}_{block.name}"))
            self.pairs.append((clone, block))
            x = self.call_block(clone, clone.name, x)
        return self.clone_and_call(orig.layer_norm, f"{orig.name}_{orig.layer_norm.name}", x)

    def clone_and_call(self, layer, name, x):
        clone = self.clone_layer(layer, self.names.unique(name))
        self.pairs.append((clone, layer))
        return clone(x)

    def call_block(self, block, name, x):
        if len(x.shape) != 3 or x.shape[-1] is None:
            raise ValueError(
                "`blocks` must take a (batch, tokens, dim) sequence with a known dim. Received: block "
                f"'{name}' called on shape {tuple(x.shape)}"
            )
        options = self.options
        if self.index == 0 or options["deep"]:
            mode = "insert" if self.index == 0 else "replace"
            seed = None if options["seed"] is None else options["seed"] + self.index
            x = VisualPrompts(
                options["num_prompts"],
                mode=mode,
                insert_at=options["insert_at"],
                patch_dim=options["patch_dim"],
                seed=seed,
                dtype=block.dtype_policy,
                name=self.names.unique(f"{name}_prompts"),
            )(x)
        self.index += 1
        outputs = block(x)
        if self.index < self.total:
            return outputs
        removal = VisualPrompts(
            options["num_prompts"],
            mode="remove",
            insert_at=options["insert_at"],
            dtype=block.dtype_policy,
            name=self.names.unique(f"{name}_prompt_removal"),
        )
        return removal(outputs)

    def check_all_called(self):
        if self.index != self.total:
            raise ValueError(
                f"`blocks` must lie on the model's graph. Received: {self.total} blocks, of which "
                f"{self.index} are called when the graph runs (blocks inside a nested Sequential model are "
                "not re-run by Keras's cloning). Rebuild that part with the functional API."
            )
