"""One tiny, compiled, never-called instance of every public model, with its training data.

Shared by the cross-model checks (fresh-process serving, resume, determinism, NaN,
mixed precision). `build(name)` returns an `Entry`: the model, its `fit` arrays
(`x`, `y`, `batch_size`; NumPy only, so a check can alter them), and `inputs(n)`,
a batch of `n` examples in the structure and dtypes a serving client sends.
"""

import collections

import keras
import numpy as np

import keras_transfer as kt

# `views=True`: `x` is a pair of view batches, fed as `((view_1, view_2),)` dataset elements.
Entry = collections.namedtuple("Entry", "model x y batch_size inputs views", defaults=(False,))

SIZE = 8


def images(n, seed=0, size=SIZE, channels=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype("float32")


def conv_encoder(size=SIZE, channels=1, features=6):
    return keras.Sequential(
        [
            keras.Input((size, size, channels)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(features),
        ]
    )


def episodes(n_tasks, seed=0):
    """3-way 2-shot episodes of 5 features: ((support_x, support_y, query_x), query_y)."""
    rng = np.random.default_rng(seed)
    sx = rng.normal(size=(n_tasks, 6, 5)).astype("float32")
    sy = np.tile(np.repeat(np.arange(3), 2), (n_tasks, 1)).astype("int64")  # as sample_episodes
    qx = rng.normal(size=(n_tasks, 4, 5)).astype("float32")
    qy = rng.integers(0, 3, size=(n_tasks, 4)).astype("int64")
    return (sx, sy, qx), qy


def task_inputs(n_tasks, seed=1):
    """Episodes as a serving client sends them: named support_x, support_y, query_x."""
    (sx, sy, qx), _ = episodes(n_tasks, seed)
    return {"support_x": sx, "support_y": sy, "query_x": qx}


def _pairs_model(cls, **kwargs):
    model = cls(conv_encoder(), projection_dim=4, **kwargs)
    model.compile(keras.optimizers.Adam(1e-3))
    views = images(8)
    return Entry(model, (views, views[::-1] * 0.9), None, 4, lambda n: images(n, seed=1), True)


def _dino():
    model = kt.models.DINO(conv_encoder(), out_dim=8, hidden_dim=6, bottleneck_dim=4, total_steps=8)
    model.compile(keras.optimizers.Adam(1e-3))
    views = images(8)
    return Entry(model, (views, views[::-1] * 0.9), None, 4, lambda n: images(n, seed=1), True)


def _pretext(cls, **kwargs):
    model = cls(conv_encoder(), **kwargs)
    model.compile(keras.optimizers.Adam(1e-3))
    return Entry(model, images(8), None, 4, lambda n: images(n, seed=1))


def _patch_pretext(cls, size, **kwargs):
    # The encoder takes any image size: patches in training, whole images when served.
    model = cls(conv_encoder(size=None), seed=3, **kwargs)
    model.compile(keras.optimizers.Adam(1e-3))
    return Entry(model, images(8, size=size), None, 4, lambda n: images(n, seed=1, size=size))


def _classifier():
    # No dropout: Keras does not checkpoint a Dropout layer's random state, so a resumed run would
    # draw other masks (the one difference BackupAndRestore leaves; see README "Reliability").
    model = kt.recipes.build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0.0)
    kt.recipes.compile_for_fine_tuning(model)
    return Entry(model, images(8, size=16), np.arange(8) % 3, 4, lambda n: images(n, 1, 16))


def _domain(cls):
    features = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")])
    classifier = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model = cls(features, classifier)
    model.compile(keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 4)).astype("float32")
    return Entry(
        model, (xs, xt), np.arange(8) % 3, 4, lambda n: np.random.default_rng(1).normal(size=(n, 4)).astype("float32")
    )


def _clip():
    text = kt.layers.TextTransformerEncoder(20, 5, embedding_dim=8, num_heads=2)
    model = kt.models.CLIP(conv_encoder(), text, projection_dim=4)
    model.compile(keras.optimizers.Adam(1e-3))

    def inputs(n, seed=1):
        ids = np.random.default_rng(seed).integers(1, 20, (n, 5)).astype("int32")
        return {"images": images(n, seed=seed), "token_ids": ids}

    return Entry(model, inputs(8, seed=0), None, 4, inputs)


def _proto_net():
    encoder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh")])
    model = kt.models.ProtoNet(encoder, n_way=3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = episodes(4)
    return Entry(model, x, y, 2, task_inputs)


def _meta_model():
    net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model = kt.models.MetaModel(net, inner_steps=1, inner_learning_rate=0.1)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = episodes(4)
    return Entry(model, x, y, 2, lambda n: np.random.default_rng(1).normal(size=(n, 5)).astype("float32"))


def _black_box():
    model = kt.models.BlackBoxLearner(3, num_classes=3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = episodes(4)
    return Entry(model, x, y, 2, task_inputs)


def _multi_task():
    trunk = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh")])
    model = kt.models.MultiTaskModel(trunk, {"a": 3, "b": 2}, loss_weights="uncertainty")
    model.compile(keras.optimizers.Adam(1e-3))
    x = {
        "inputs": np.random.default_rng(0).normal(size=(8, 5)).astype("float32"),
        "task": np.tile([0, 1], 4).astype("int64"),
    }
    y = (np.arange(8) % 2).astype("int64")
    return Entry(model, x, y, 4, lambda n: np.random.default_rng(1).normal(size=(n, 5)).astype("float32"))


def _masked_language_model():
    encoder = kt.layers.TextTransformerEncoder(12, 6, embedding_dim=8, num_layers=1, num_heads=2, pooling=None)
    model = kt.models.MaskedLanguageModel(encoder, 12, mask_rate=0.5, seed=3)
    model.compile(keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).integers(2, 12, size=(8, 6)).astype("int32")
    return Entry(model, x, None, 4, lambda n: np.random.default_rng(1).integers(2, 12, size=(n, 6)).astype("int32"))


def _next_sentence():
    encoder = kt.layers.TextTransformerEncoder(
        12, 6, embedding_dim=8, num_layers=1, num_heads=2, pooling=None, num_segments=2
    )
    model = kt.models.MaskedLanguageModel(
        encoder, 12, mask_rate=0.5, next_sentence=True, unmaskable_ids=(2, 3), first_random_id=4, seed=3
    )
    model.compile(keras.optimizers.Adam(1e-3))

    def pairs(n, seed):
        rng = np.random.default_rng(seed)
        documents = [[list(rng.integers(4, 12, 1)) for _ in range(n + 1)], [[5], [6]]]
        inputs, is_next = kt.datasets.sentence_pairs(documents, 6, seed=seed)
        return {k: v[:n] for k, v in inputs.items()}, is_next[:n]

    x, y = pairs(8, 0)
    return Entry(model, x, y, 4, lambda n: pairs(n, 1)[0])


def features(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 5)).astype("float32")


def _tent():
    # LayerNormalization (norm_layers="all"): a BatchNorm TENT normalises with the batch's own
    # moments and refuses batches of one, which the serving check sends.
    classifier = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4), keras.layers.LayerNormalization(), keras.layers.Dense(3)]
    )
    model = kt.models.TENT(classifier, norm_layers="all")
    model.compile(keras.optimizers.Adam(1e-2))
    return Entry(model, features(8), None, 4, lambda n: features(n, seed=1))


def _labelled_classifier(head_activation=None):
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, activation="tanh", name="features"),
            keras.layers.Dense(3, activation=head_activation, name="head"),
        ]
    )


def _anchored():
    classifier = _labelled_classifier()
    fisher = [np.random.default_rng(2).uniform(0.5, 2.0, v.shape).astype("float32") for v in classifier.weights[:2]]
    model = kt.models.AnchoredFineTuning(classifier, "ewc", alpha=0.5, beta=0.1, fisher=fisher)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return Entry(model, features(8), np.arange(8) % 3, 4, lambda n: features(n, seed=1))


def _learning_without_forgetting():
    source = _labelled_classifier("softmax")
    classifier = kt.recipes.replace_head(source, 2, activation=None)
    model = kt.models.LearningWithoutForgetting(classifier, source.get_layer("head"))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return Entry(model, features(8), np.arange(8) % 2, 4, lambda n: features(n, seed=1))


def _distiller():
    teacher, student = _labelled_classifier(), _labelled_classifier()
    model = kt.models.KnowledgeDistiller(teacher, student, kt.losses.SoftTargetDistillation(2.0))
    model.compile(keras.optimizers.Adam(1e-3))
    return Entry(model, features(8), np.arange(8) % 3, 4, lambda n: features(n, seed=1))


BUILDERS = {
    "classifier": _classifier,
    "SimCLR": lambda: _pairs_model(kt.models.SimCLR),
    "MoCo": lambda: _pairs_model(kt.models.MoCo, queue_size=16, bn_splits=1, seed=3),
    "SimSiam": lambda: _pairs_model(kt.models.SimSiam),
    "BYOL": lambda: _pairs_model(kt.models.BYOL, total_steps=8),
    "BarlowTwins": lambda: _pairs_model(kt.models.BarlowTwins, redundancy_weight=0.25),
    "VICReg": lambda: _pairs_model(kt.models.VICReg),
    "DINO": _dino,
    "RotationPrediction": lambda: _pretext(kt.models.RotationPrediction),
    "DenoisingAutoencoder": lambda: _pretext(kt.models.DenoisingAutoencoder, decoder_hidden_dim=8, seed=3),
    "MaskedImputation": lambda: _pretext(kt.models.MaskedImputation, decoder_hidden_dim=8, seed=3),
    "RelativePatchPosition": lambda: _patch_pretext(
        kt.models.RelativePatchPosition, 12, patch_size=3, gap=1, head_hidden_dim=8
    ),
    "JigsawPuzzle": lambda: _patch_pretext(
        kt.models.JigsawPuzzle, SIZE, tile_size=4, grid_size=2, permutations=6, gap=0, head_hidden_dim=8
    ),
    "CLIP": _clip,
    "DANN": lambda: _domain(kt.models.DANN),
    "SourceOnly": lambda: _domain(kt.models.SourceOnly),
    "DeepCORAL": lambda: _domain(kt.models.DeepCORAL),
    "ProtoNet": _proto_net,
    "MetaModel": _meta_model,
    "BlackBoxLearner": _black_box,
    "MultiTaskModel": _multi_task,
    "MaskedLanguageModel": _masked_language_model,
    "MaskedLanguageModelNSP": _next_sentence,
    "TENT": _tent,
    "AnchoredFineTuning": _anchored,
    "LearningWithoutForgetting": _learning_without_forgetting,
    "KnowledgeDistiller": _distiller,
}

NAMES = tuple(BUILDERS)


def build(name, seed=0):
    keras.utils.set_random_seed(seed)
    return BUILDERS[name]()


def fit(entry, epochs=1, steps_per_epoch=None, x=None, **kwargs):
    """`fit` on the entry's own arrays (or `x` in their structure), unshuffled."""
    x = entry.x if x is None else x
    kwargs.setdefault("verbose", 0)
    if entry.views:
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((x,)).batch(entry.batch_size)
        return entry.model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, **kwargs)
    return entry.model.fit(
        x, entry.y, batch_size=entry.batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, **kwargs
    )


def has_float_inputs(x):
    """Whether the `fit` arrays hold a float array (token ids alone cannot carry a NaN)."""
    if isinstance(x, dict):
        return any(has_float_inputs(v) for v in x.values())
    if isinstance(x, (tuple, list)):
        return any(has_float_inputs(v) for v in x)
    return isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)


def with_nan(x):
    """A copy of the `fit` arrays with one NaN in every float array."""
    if isinstance(x, dict):
        return {k: with_nan(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(with_nan(v) for v in x)
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
        x = x.copy()
        x.reshape(-1)[0] = np.nan
    return x
