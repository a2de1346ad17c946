"""Stacked denoising autoencoders: greedy layer-wise vs end-to-end pre-training, digits linear probe.

The same encoder, `Flatten -> Dense(128, sigmoid) -> Dense(64, sigmoid)` on the 8x8 digits
(1,347 training images, no labels), is pre-trained three ways, then frozen and scored by the
convex linear probe on the 450 held-out digits with 2, 10 or all labels per class:

- random init (no pre-training);
- greedy layer-wise (`recipes.pretrain_stacked_denoising`, Vincent et al. 2010): each layer a
  denoising autoencoder on the codes below, `epochs` each;
- end-to-end: one `models.DenoisingAutoencoder` over the whole encoder with the mirrored decoder
  `Dense(128, sigmoid) -> Dense(64, sigmoid)`, for as many epochs as the greedy layers together.

Masking noise 25 %, Adam 3e-3, batch 64.

    python benchmarks/sdae_digits.py [--quick] [--seeds 3] [--epochs 30]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import collections

import keras
import numpy as np

from benchmarks import _common
from benchmarks import _ssl_experiment
from keras_transfer import datasets
from keras_transfer import models
from keras_transfer import recipes

METHODS = ("random init", "greedy layer-wise", "end-to-end")
SIZES = (128, 64)


def _stack(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten()]
        + [keras.layers.Dense(size, activation="sigmoid") for size in SIZES]
    )


def _encoder(method, x, epochs, seed):
    if method == "greedy layer-wise":
        encoder, _ = recipes.pretrain_stacked_denoising(
            x, SIZES, epochs=epochs, batch_size=64, learning_rate=3e-3, mask_rate=0.25, seed=seed
        )
        return encoder
    encoder = _stack(seed)
    if method == "end-to-end":
        decoder = keras.Sequential(
            [keras.Input((SIZES[-1],)), keras.layers.Dense(SIZES[0], activation="sigmoid")]
            + [keras.layers.Dense(64, activation="sigmoid"), keras.layers.Reshape((8, 8, 1))]
        )
        model = models.DenoisingAutoencoder(encoder, decoder=decoder, corruption="masking", mask_rate=0.25, seed=seed)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        model.fit(x, epochs=epochs * len(SIZES), batch_size=64, shuffle=True, verbose=0)
    return encoder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30, help="epochs per layer (end-to-end: times the layers)")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs
    budgets = (2,) if args.quick else (2, 10, None)

    data = datasets.load_digits(image_size=8, channels=1, seed=0)
    scores = collections.defaultdict(list)
    for seed in range(seeds):
        for method in METHODS:
            encoder = _encoder(method, data[0][0], epochs, seed)
            for budget, accuracy in _ssl_experiment.probe(encoder, data, budgets, seed=seed).items():
                scores[(method, budget)].append(accuracy)
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    print(f"\nDigits 8x8, linear probe on frozen features; {seeds} seed(s), mean ± std")
    header = ["pre-training"] + [f"{b} labels/class" if b else "all labels" for b in budgets]
    _common.print_table(header, [[m] + [_common.mean_std(scores[(m, b)]) for b in budgets] for m in METHODS])
    return {key: float(np.mean(value)) for key, value in scores.items()}


if __name__ == "__main__":
    main()
