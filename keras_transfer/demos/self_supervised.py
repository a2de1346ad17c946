"""Demo section "self_supervised": pre-train an encoder on unlabeled digits, probe it linearly.

SimCLR, MoCo, rotation prediction and a denoising autoencoder each pre-train the same
small CNN on the digits training images WITHOUT labels; the frozen encoder is then
evaluated with the convex linear probe on few labels (and all labels), against a
random-init encoder and a supervised one. Written with the public API as a user would;
`benchmarks/ssl_digits_probe.py` runs the same comparison over seeds and label budgets.
"""

import os
import time

import keras
import numpy as np

from keras_transfer.augment import SimCLRAugmentation
from keras_transfer.augment import simclr_dataset
from keras_transfer.datasets import load_digits
from keras_transfer.demos.report import bar_plot
from keras_transfer.demos.report import print_table
from keras_transfer.models import DenoisingAutoencoder
from keras_transfer.models import MoCo
from keras_transfer.models import RotationPrediction
from keras_transfer.models import SimCLR
from keras_transfer.recipes import linear_evaluation

METHODS = ("random init", "simclr", "moco", "rotation", "denoising", "supervised")


def digits_encoder(image_size=16, widths=(32, 64, 128)):
    """Conv-BN-ReLU blocks + global average pooling: raw [0, 255] pixels -> features."""
    inputs = keras.Input((image_size, image_size, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        x = keras.layers.MaxPooling2D()(x) if i < len(widths) - 1 else x
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="encoder")


def pretrain(method, x_train, y_train, epochs, seed=0, image_size=16, widths=(32, 64, 128)):
    """The encoder after `epochs` of `method` on the training images (labels only for "supervised")."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {list(METHODS)}. Received: method={method!r}")
    keras.utils.set_random_seed(seed)
    encoder = digits_encoder(image_size, widths)
    if method == "random init" or epochs == 0:
        return encoder
    if method == "supervised":  # the upper reference: the same encoder trained with all labels
        inputs = keras.Input(encoder.inputs[0].shape[1:])
        classifier = keras.layers.Dense(int(np.max(y_train)) + 1, activation="softmax")
        model = keras.Model(inputs, classifier(encoder(inputs)))
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
        model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0)
        return encoder
    model = {
        "simclr": lambda: SimCLR(encoder, projection_dim=64, temperature=0.5),
        # Same batch, temperature and views as SimCLR; a queue of 2 batches of past keys.
        "moco": lambda: MoCo(encoder, projection_dim=64, queue_size=512, momentum=0.99, temperature=0.5, bn_splits=2),
        "rotation": lambda: RotationPrediction(encoder),
        "denoising": lambda: DenoisingAutoencoder(encoder, corruption="masking", mask_rate=0.3, seed=seed),
    }[method]()
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    if method in ("simclr", "moco"):
        # Crops and intensity jitter; no flips (digits are not mirror-invariant).
        views = SimCLRAugmentation(
            image_size, crop_scale=(0.3, 1.0), flip=False, jitter_strength=0.5, blur_probability=0.0
        )
        data = simclr_dataset(x_train, batch_size=256, augmentation=views, seed=seed)
        model.fit(data, epochs=epochs, verbose=0, shuffle=False)
    else:
        model.fit(x_train, batch_size=128, epochs=epochs, verbose=0)
    return encoder


def run(output_dir, quick=False):
    """Pre-trains with every method on unlabeled digits and prints the linear-probe table."""
    os.makedirs(output_dir, exist_ok=True)
    image_size = 16
    (x_train, y_train), (x_test, y_test) = load_digits(image_size=image_size, channels=1, seed=0)
    if quick:  # seconds: a slice of the data, tiny encoder, one epoch
        x_train, y_train, x_test, y_test = x_train[:300], y_train[:300], x_test[:150], y_test[:150]
    epochs = 1 if quick else 30
    widths = (4, 8) if quick else (32, 64, 128)
    methods = ("random init", "simclr", "rotation") if quick else METHODS
    # Two labelled examples per class for the few-label probe (the same ones for every encoder).
    rng = np.random.default_rng(0)
    two_per_class = np.concatenate(
        [rng.choice(np.where(y_train == c)[0], 2, replace=False) for c in np.unique(y_train)]
    )
    rows, results = [], {}
    for method in methods:
        start = time.time()
        encoder = pretrain(method, x_train, y_train, epochs, seed=0, image_size=image_size, widths=widths)
        results[method] = {
            "2_labels_per_class": linear_evaluation(
                encoder, x_train[two_per_class], y_train[two_per_class], x_test, y_test, num_classes=10, C=1.0
            )["test_accuracy"],
            "all_labels": linear_evaluation(encoder, x_train, y_train, x_test, y_test, num_classes=10, C=1.0)[
                "test_accuracy"
            ],
        }
        rows.append([method] + [f"{a:.3f}" for a in results[method].values()] + [f"{time.time() - start:.0f}"])
    print(f"Linear probe on frozen encoders, digits {image_size}px, {epochs} pre-training epoch(s):")
    print_table(["encoder", "2 labels/class", "all labels", "seconds"], rows)
    bar_plot(
        {m: r["2_labels_per_class"] for m, r in results.items()},
        os.path.join(output_dir, "linear_probe_2_labels.png"),
        title="Linear probe, 2 labels per class",
        ylabel="test accuracy",
    )
    return results
