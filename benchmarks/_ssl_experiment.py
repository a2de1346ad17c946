"""The self-supervised digits experiment of `ssl_digits_probe.py`.

SimCLR, MoCo, Barlow Twins, VICReg, SimSiam, BYOL, DINO, rotation prediction, a denoising autoencoder,
relative patch position and jigsaw puzzles each pre-train the same small CNN on the digits training images
WITHOUT labels; the frozen encoder is then evaluated with the convex linear probe on
few labels (and all labels), against a random-init encoder and a supervised one.
"""

import keras
import numpy as np

from keras_transfer.augment import SimCLRAugmentation
from keras_transfer.augment import simclr_dataset
from keras_transfer.layers import DINOHead
from keras_transfer.models import BYOL
from keras_transfer.models import DINO
from keras_transfer.models import BarlowTwins
from keras_transfer.models import DenoisingAutoencoder
from keras_transfer.models import JigsawPuzzle
from keras_transfer.models import MoCo
from keras_transfer.models import RelativePatchPosition
from keras_transfer.models import RotationPrediction
from keras_transfer.models import SimCLR
from keras_transfer.models import SimSiam
from keras_transfer.models import VICReg
from keras_transfer.recipes import linear_evaluation

METHODS = (
    "random init", "simclr", "moco", "barlow_twins", "vicreg", "simsiam", "byol", "dino", "rotation", "denoising",
    "relative_position", "jigsaw", "supervised",
)  # fmt: skip

# The two-view methods: the same views (batch 256) and a 64-d projection. MoCo: SimCLR's temperature 0.5 and a
# queue of 2 batches of past keys; Barlow Twins and VICReg: the papers' loss weights; SimSiam and BYOL: the papers'
# heads (BatchNorm MLPs; SimSiam's predictor bottleneck 64 // 4), BYOL's cosine schedule over the run's steps from
# MoCo's momentum 0.99 here (the paper's 0.996 is for ~10^5 steps; this run has a few hundred). DINO: the paper's
# head (3 GELU layers, L2-normalised 64-d bottleneck, 1024 weight-normalised prototypes) with the official code's
# `use_bn_in_head` (without it the head collapsed to uniform targets on the validation split), the paper's
# temperatures (0.1 / 0.04) and centre momentum 0.9, BYOL's teacher momentum schedule from 0.99.
TWO_VIEW = {
    "simclr": lambda encoder, temperature, bn_splits, steps: SimCLR(
        encoder, projection_dim=64, temperature=temperature
    ),
    "moco": lambda encoder, temperature, bn_splits, steps: MoCo(
        encoder, projection_dim=64, queue_size=512, momentum=0.99, temperature=0.5, bn_splits=bn_splits
    ),
    "barlow_twins": lambda encoder, temperature, bn_splits, steps: BarlowTwins(encoder, projection_dim=64),
    "vicreg": lambda encoder, temperature, bn_splits, steps: VICReg(encoder, projection_dim=64),
    "simsiam": lambda encoder, temperature, bn_splits, steps: SimSiam(encoder, projection_dim=64),
    "byol": lambda encoder, temperature, bn_splits, steps: BYOL(
        encoder, projection_dim=64, momentum=0.99, total_steps=steps
    ),
    "dino": lambda encoder, temperature, bn_splits, steps: DINO(
        encoder, head=DINOHead(1024, 256, 64, use_bn=True), momentum=0.99, total_steps=steps
    ),
}

# The patch tasks encode patches: their encoder takes any size (same weights as the others).
PATCH_METHODS = ("relative_position", "jigsaw")

# Final-epoch training metrics of the last `pretrain` call ({} for random init), for reports.
LAST_METRICS = {}


def digits_encoder(image_size=16, widths=(32, 64, 128), name="encoder"):
    """Conv-BN-ReLU blocks + global average pooling: raw [0, 255] pixels -> features
    (`image_size=None`: any image size)."""
    inputs = keras.Input((image_size, image_size, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if i < len(widths) - 1:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name=name)


def digits_augmentation(image_size):
    """SimCLR views for digits: crops and intensity jitter; no flips (digits are not mirror-invariant)."""
    return SimCLRAugmentation(image_size, crop_scale=(0.3, 1.0), flip=False, jitter_strength=0.5, blur_probability=0.0)


def pretrain(
    method,
    x_train,
    y_train,
    epochs,
    seed=0,
    image_size=16,
    widths=(32, 64, 128),
    moco_bn_splits=2,
    simclr_temperature=0.5,
):
    """The encoder after `epochs` of `method` on the training images (labels only for "supervised")."""
    LAST_METRICS.clear()
    keras.utils.set_random_seed(seed)
    encoder = digits_encoder(None if method in PATCH_METHODS else image_size, widths)
    if method == "random init" or epochs == 0:
        return encoder
    # A 3x3 grid with a 1-pixel gap (and 1-pixel jitter from 16 px): 4 px patches at 16 px, 2 px at 8 px.
    jitter = 1 if image_size >= 16 else 0
    patch_size = (image_size - 2 - 2 * jitter) // 3
    optimizer = keras.optimizers.Adam(2e-3)
    if method in TWO_VIEW:
        data = simclr_dataset(x_train, batch_size=256, augmentation=digits_augmentation(image_size), seed=seed)
        steps = epochs * max(1, int(data.cardinality()))
        model = TWO_VIEW[method](encoder, simclr_temperature, moco_bn_splits, steps)
        model.compile(optimizer=optimizer)
        LAST_METRICS.update(_last(model.fit(data, epochs=epochs, verbose=0, shuffle=False)))
    elif method == "rotation":
        model = RotationPrediction(encoder)
        model.compile(optimizer=optimizer)
        model.fit(x_train, batch_size=128, epochs=epochs, verbose=0)
    elif method == "denoising":
        model = DenoisingAutoencoder(encoder, corruption="masking", mask_rate=0.3, seed=seed)
        model.compile(optimizer=optimizer)
        model.fit(x_train, batch_size=128, epochs=epochs, verbose=0)
    elif method == "relative_position":
        model = RelativePatchPosition(encoder, patch_size=patch_size, gap=1, jitter=jitter, seed=seed)
        model.compile(optimizer=optimizer)
        LAST_METRICS.update(_last(model.fit(x_train, batch_size=128, epochs=epochs, verbose=0)))
    elif method == "jigsaw":
        model = JigsawPuzzle(encoder, tile_size=patch_size, permutations=100, gap=1, jitter=jitter, seed=seed)
        model.compile(optimizer=optimizer)
        LAST_METRICS.update(_last(model.fit(x_train, batch_size=128, epochs=epochs, verbose=0)))
    elif method == "supervised":
        inputs = keras.Input(encoder.inputs[0].shape[1:])
        outputs = keras.layers.Dense(int(np.max(y_train)) + 1, activation="softmax")(encoder(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0)
    else:
        raise ValueError(f"`method` must be one of {list(METHODS)}. Received: method={method!r}")
    return encoder


def _last(history):
    return {name: values[-1] for name, values in history.history.items()}


def label_subset(y, labels_per_class, seed):
    """Indices of `labels_per_class` examples of each class (all indices for None)."""
    if labels_per_class is None:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.where(y == c)[0], labels_per_class, replace=False) for c in np.unique(y)])


def probe(encoder, data, budgets, seed=0):
    """{budget: linear-probe test accuracy} for each labels-per-class budget (None = all)."""
    (x_train, y_train), (x_test, y_test) = data
    results = {}
    for budget in budgets:
        index = label_subset(y_train, budget, seed)
        results[budget] = linear_evaluation(
            encoder, x_train[index], y_train[index], x_test, y_test, num_classes=10, C=1.0
        )["test_accuracy"]
    return results
