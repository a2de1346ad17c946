"""A registry over keras.applications: constructors, preprocessing, input limits and blocks.

`load_backbone(name, input_shape, weights)` builds a headless backbone; `weights` is
"imagenet" (cached file, or a download when online), a local weights file, or None.
Offline "imagenet" with no cached file raises `OfflineError` naming the file, the
cache folder and the alternatives, within a second, instead of a bare URL failure.
"""

import collections
import contextlib
import dataclasses
import difflib
import os
import re

import keras

from keras_transfer.utils import model_graph
from keras_transfer.utils.network import OfflineError
from keras_transfer.utils.network import is_online


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What keras_transfer knows about one backbone of the registry.

    One entry of `keras_transfer.recipes.BACKBONES`: how to build the backbone, how
    its inputs are preprocessed, its input size limits and how its layers group into
    blocks (for surgical fine-tuning and layer-wise learning-rate decay).

    Attributes:
        name: the registry name (e.g. "resnet50").
        constructor: the attribute of `keras.applications`, or "simple_cnn".
        preprocess: the `BackbonePreprocessing` mode of its inputs.
        min_size: the smallest height and width it accepts.
        default_size: the height and width used when no input shape is given.
        block_key: None, or a regex whose group 1 names the block a layer belongs to.
        block_end: None, or a regex matching the name of the layer that ends a block.
        imagenet: whether ImageNet weights exist for it.

    Example:

    >>> spec = keras_transfer.recipes.get_spec("simple_cnn")
    >>> spec.constructor, spec.min_size, spec.default_size, spec.imagenet
    ('simple_cnn', 8, 32, False)
    """

    name: str
    constructor: str  # attribute of keras.applications, or "simple_cnn"
    preprocess: str  # BackbonePreprocessing mode
    min_size: int = 32
    default_size: int = 224
    block_key: str = None  # regex; group 1 names the block a layer belongs to
    block_end: str = None  # regex; a layer whose name matches ends a block
    imagenet: bool = True

    @property
    def family(self):
        return self.constructor


def _spec(name, ctor, pre, **kw):
    return BackboneSpec(name, ctor, pre, **kw)


_RESNET_KEY = r"^(conv\d+_block\d+)_"
_EFF_KEY = r"^(block\d+[a-z])_"
_SPECS = [
    _spec("mobilenet", "MobileNet", "tf", block_key=r"^conv_(?:dw|pw|pad)_(\d+)"),
    _spec("mobilenet_v2", "MobileNetV2", "tf", block_key=r"^(block_\d+|expanded_conv)_"),
    _spec("mobilenet_v3_small", "MobileNetV3Small", "none", block_key=r"^(expanded_conv(?:_\d+)?)_"),
    _spec("mobilenet_v3_large", "MobileNetV3Large", "none", block_key=r"^(expanded_conv(?:_\d+)?)_"),
    *[_spec(f"efficientnet_b{i}", f"EfficientNetB{i}", "none", block_key=_EFF_KEY) for i in range(8)],
    *[_spec(f"efficientnet_v2_b{i}", f"EfficientNetV2B{i}", "none", block_key=_EFF_KEY) for i in range(4)],
    *[_spec(f"efficientnet_v2_{s}", f"EfficientNetV2{s.upper()}", "none", block_key=_EFF_KEY) for s in "sml"],
    *[_spec(f"resnet{d}", f"ResNet{d}", "caffe", block_key=_RESNET_KEY) for d in (50, 101, 152)],
    *[_spec(f"resnet{d}_v2", f"ResNet{d}V2", "tf", block_key=_RESNET_KEY) for d in (50, 101, 152)],
    *[
        _spec(f"convnext_{s}", f"ConvNeXt{c}", "none", block_key=r"(stage_\d+_block_\d+)_")
        for s, c in (("tiny", "Tiny"), ("small", "Small"), ("base", "Base"), ("large", "Large"), ("xlarge", "XLarge"))
    ],
    *[_spec(f"densenet{d}", f"DenseNet{d}", "torch", block_key=_RESNET_KEY) for d in (121, 169, 201)],
    _spec("xception", "Xception", "tf", min_size=71, default_size=299, block_key=r"^(block\d+)_"),
    _spec("vgg16", "VGG16", "caffe", block_key=r"^(block\d+)_"),
    _spec("vgg19", "VGG19", "caffe", block_key=r"^(block\d+)_"),
    _spec("inception_v3", "InceptionV3", "tf", min_size=75, default_size=299, block_end=r"^mixed\d+$"),
    _spec(
        "inception_resnet_v2",
        "InceptionResNetV2",
        "tf",
        min_size=75,
        default_size=299,
        block_end=r"^(mixed_\w+|block\d+_\d+_ac|conv_7b_ac)$",
    ),
    _spec("nasnet_mobile", "NASNetMobile", "tf", block_end=r"_concat"),
    _spec("simple_cnn", "simple_cnn", "unit", min_size=8, default_size=32, block_key=r"^(block\d+)_", imagenet=False),
]
BACKBONES = collections.OrderedDict((s.name, s) for s in _SPECS)
# Transformer blocks of text backbones: keras-hub's `transformer_layer_<i>` / `decoder_block_<i>`
# layers, and the `block<i>_*` sublayers of `keras_transfer.layers.TextTransformerEncoder`.
TRANSFORMER_BLOCK_KEY = r"^((?:block|transformer_layer_|decoder_block_)\d+)(?:_|$)"
TRANSFORMER_SPEC = BackboneSpec("transformer", "transformer", "none", block_key=TRANSFORMER_BLOCK_KEY, imagenet=False)


def available_backbones():
    """The names of the registry's backbones.

    Returns:
        A list of names accepted by `load_backbone` and `build_classifier`.

    Example:

    >>> names = keras_transfer.recipes.available_backbones()
    >>> len(names), names[0], "resnet50" in names, "simple_cnn" in names
    (40, 'mobilenet', True, True)
    """
    return list(BACKBONES)


def get_spec(name):
    """The `BackboneSpec` registered under `name`.

    Args:
        name: a registry name (see `available_backbones()`).

    Returns:
        The `BackboneSpec`.

    Raises:
        ValueError: if `name` is not registered; the message lists close names and
            all names.

    Example:

    >>> keras_transfer.recipes.get_spec("resnet50").constructor
    'ResNet50'
    """
    if isinstance(name, str) and name in BACKBONES:
        return BACKBONES[name]
    close = difflib.get_close_matches(str(name), list(BACKBONES), n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(
        f"`backbone` must be one of the registered backbones.{hint} Received: backbone={name!r}. "
        f"Available: {', '.join(BACKBONES)}"
    )


def simple_cnn(input_shape=(32, 32, 3), widths=(16, 32, 64), name="simple_cnn"):
    """A small conv-BN-ReLU-pool CNN in named blocks: fast enough for tests and demos."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(widths, start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
        if i < len(widths):
            x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
    return keras.Model(inputs, x, name=name)


def keras_cache_dir():
    """Where keras.utils.get_file caches application weights."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    if not os.access(base, os.W_OK) and not os.path.isdir(base):
        base = os.path.join("/tmp", ".keras")
    return os.path.join(base, "models")


@contextlib.contextmanager
def _offline_guard(backbone_name):
    """Turns keras' weight download into a fast, clear `OfflineError` when it cannot work."""
    seen = {}

    def guard(original):
        def guarded_get_file(fname=None, origin=None, *args, **kwargs):
            fname = fname or os.path.basename(origin or "")
            seen.update(fname=fname, origin=origin)
            cache_subdir = kwargs.get("cache_subdir", "datasets")
            cache_dir = kwargs.get("cache_dir") or os.path.dirname(keras_cache_dir())
            path = os.path.join(cache_dir, cache_subdir, fname)
            if not os.path.exists(path) and not is_online():
                raise OfflineError(_offline_message(backbone_name, fname, origin, os.path.dirname(path)))
            return original(fname, origin, *args, **kwargs)

        return guarded_get_file

    try:
        with model_graph.wrapped_get_file(guard):
            yield seen
    except OfflineError:
        raise
    except Exception as error:
        if "URL fetch failure" in str(error) or "urlopen" in str(error).lower():
            fname = seen.get("fname") or "the weights file"
            raise OfflineError(_offline_message(backbone_name, fname, seen.get("origin"), keras_cache_dir())) from error
        raise


def _offline_message(backbone_name, fname, origin, cache_dir):
    return (
        f"ImageNet weights for backbone {backbone_name!r} are not cached and this machine cannot download them. "
        f"Missing file: {fname} (from {origin}). Cache folder: {cache_dir}. Either copy {fname} into that folder "
        f"(download it on a machine with internet), pass weights='/path/to/{fname}' (a local file), or pass "
        "weights=None to start from random initialisation."
    )


def load_backbone(name, input_shape=None, weights=None, **kwargs):
    """Builds a headless backbone from the registry.

    Offline, `weights="imagenet"` with no cached weights file raises an
    `OfflineError` (from `keras_transfer.utils.network`) naming the file, the
    cache folder and the alternatives.

    Args:
        name: registry name (see `available_backbones()`).
        input_shape: (height, width, 3); defaults to the family's default size.
        weights: "imagenet", a path to a local weights file, or None.
        **kwargs: passed to the keras.applications constructor (e.g. `alpha`).

    Returns:
        A headless `keras.Model` mapping preprocessed images to feature maps.

    Raises:
        ValueError: if `name` is not registered, `input_shape` is not
            (height, width, channels) or is below the backbone's minimum size,
            `weights` is neither "imagenet", None nor an existing file, or
            "imagenet" is asked for a backbone without ImageNet weights or inputs
            without 3 channels.
        OfflineError: if `weights="imagenet"` is not cached and cannot be
            downloaded.

    Example:

    >>> backbone = keras_transfer.recipes.load_backbone("simple_cnn", (32, 32, 3))
    >>> backbone.output_shape
    (None, 8, 8, 64)
    """
    spec = get_spec(name)
    if input_shape is None:
        input_shape = (spec.default_size, spec.default_size, 3)
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels). Received: input_shape={input_shape}")
    if min(input_shape[:2]) < spec.min_size:
        raise ValueError(
            f"`input_shape` must be at least {spec.min_size}x{spec.min_size} for backbone {name!r}. "
            f"Received: input_shape={input_shape}. Resize the images (build_classifier's image_size does it)."
        )
    if weights not in (None, "imagenet"):
        if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
            raise ValueError(
                "`weights` must be 'imagenet', None, or the path of an existing weights file. "
                f"Received: weights={weights!r}"
            )
    if weights == "imagenet":
        if not spec.imagenet:
            raise ValueError(
                f"`weights` must be None or a local file for backbone {name!r}: it has no ImageNet weights. "
                "Received: weights='imagenet'"
            )
        if input_shape[-1] != 3:
            raise ValueError(
                f"`input_shape` must have 3 channels for ImageNet weights. Received: input_shape={input_shape}. "
                "build_classifier converts grayscale inputs to RGB in front of the backbone."
            )
    if spec.constructor == "simple_cnn":
        model = simple_cnn(input_shape, **kwargs)
        if weights is not None:
            model.load_weights(weights)
        return model
    ctor = getattr(keras.applications, spec.constructor)
    with _offline_guard(name):
        model = ctor(include_top=False, weights=weights, input_shape=input_shape, **kwargs)
    return model


def backbone_blocks(backbone, spec=None, own_variables=False):
    """Groups a backbone's layers into its blocks, in order.

    Blocks come from the registry's name pattern for the backbone's family; for a
    model that is not in the registry, pass a `BackboneSpec` or rely on the generic
    `block<N>` pattern. Text backbones split into transformer blocks: keras-hub's
    `transformer_layer_<i>` layers, and a layer holding a whole transformer (such as
    `keras_transfer.layers.TextTransformerEncoder`, whose sublayers are named
    `block<i>_*`) is split into its sublayers, its embeddings joining the stem.

    Args:
        backbone: a headless backbone model.
        spec: None (the registry spec whose pattern finds the most blocks), or a
            `BackboneSpec`.
        own_variables: also list, at the start of the stem, the variables that a split
            layer holds itself rather than through a sublayer (the position
            embedding of a `TextTransformerEncoder`).

    Returns:
        An `OrderedDict` `{block name: [layers]}` whose first key is "stem" (layers
        before the first block) and last key "top" (layers after the last block),
        when those exist.

    Example:

    >>> backbone = keras_transfer.recipes.load_backbone("simple_cnn", (32, 32, 3))
    >>> blocks = keras_transfer.recipes.backbone_blocks(backbone)
    >>> list(blocks), [layer.name for layer in blocks["block1"]]
    (['block1', 'block2', 'block3'], ['block1_conv', 'block1_bn', 'block1_relu', 'block1_pool'])
    >>> encoder = keras_transfer.layers.TextTransformerEncoder(20, 6, embedding_dim=4, num_heads=1)
    >>> token_ids = keras.Input((6,), dtype="int32")
    >>> text = keras.Model(token_ids, encoder(token_ids))
    >>> {name: len(layers) for name, layers in keras_transfer.recipes.backbone_blocks(text).items()}
    {'stem': 1, 'block0': 5, 'block1': 5, 'top': 2}
    """
    layers, own = _block_units(backbone)
    if spec is None:
        spec = _guess_spec(layers)
    keys = _block_keys(spec, layers)
    blocks = collections.OrderedDict()
    if own_variables and own:
        blocks["stem"] = list(own)
    for key, layer in zip(keys, layers):
        blocks.setdefault(key, []).append(layer)
    return blocks


def _block_keys(spec, layers):
    """The block name of each layer, by `spec`'s block_key or block_end pattern."""
    keys = []
    if spec.block_key:
        pattern = re.compile(spec.block_key)
        for layer in layers:
            match = pattern.search(layer.name)
            key = match.group(1) if match else None
            keys.append(f"block_{key}" if key is not None and key.isdigit() else key)
        matched = [i for i, k in enumerate(keys) if k is not None]
        if not matched:
            return ["stem"] * len(layers)
        first, last = matched[0], matched[-1]
        current = None
        for i in range(len(layers)):
            if i < first:
                keys[i] = "stem"
            elif i > last:
                keys[i] = "top"
            elif keys[i] is None:
                keys[i] = current
            current = keys[i]
        return keys
    pattern = re.compile(spec.block_end)
    index, current = 0, "block0"
    for layer in layers:
        keys.append(current)
        if pattern.search(layer.name):
            index += 1
            current = f"block{index}"
    return ["top" if k == current and index > 0 else k for k in keys]


def _block_units(backbone):
    """`(layers, own variables)`: the backbone's layers, a layer holding transformer blocks split into its sublayers.

    A split layer's sublayers come in block order (stem, blocks, top) whatever the
    order of its attributes; the variables it holds itself are returned apart.
    """
    pattern = re.compile(TRANSFORMER_BLOCK_KEY)
    units, own = [], []
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        children = [] if isinstance(layer, keras.Model) else _children(layer)
        keys = [_match(pattern, child.name) for child in children]
        if not any(key is not None for key in keys):
            units.append(layer)
            continue
        order = {key: i for i, key in enumerate(dict.fromkeys(k for k in keys if k is not None))}
        first = next(i for i, k in enumerate(keys) if k is not None)
        # Unmatched sublayers before the first block form the stem (-1), the others the top.
        rank = [order[k] if k is not None else (-1 if i < first else len(order)) for i, k in enumerate(keys)]
        units.extend(children[i] for i in sorted(range(len(children)), key=lambda i: (rank[i], i)))
        inner = {id(w) for child in children for w in child.weights}
        own.extend(w for w in layer.weights if id(w) not in inner)
    return units, own


def _match(pattern, name):
    match = pattern.search(name)
    return match.group(1) if match else None


def _children(layer):
    """The direct sublayers of a (non-model) layer."""
    return [sub for path, sub in model_graph.iter_sublayers(layer, "") if path.count("/") == 1]


def _count_blocks(spec, names):
    if spec.block_key:
        pattern = re.compile(spec.block_key)
        return len({m.group(1) for m in map(pattern.search, names) if m})
    pattern = re.compile(spec.block_end)
    return sum(bool(pattern.search(n)) for n in names)


def _guess_spec(layers):
    """The registry spec (or the transformer one) whose block pattern finds the most blocks in `layers`."""
    names = [layer.name for layer in layers]
    best, best_count = None, 0
    for spec in (*BACKBONES.values(), TRANSFORMER_SPEC):
        count = _count_blocks(spec, names)
        if count > best_count:
            best, best_count = spec, count
    return best or BackboneSpec("custom", "custom", "none", block_key=r"^(block\d+)_")
