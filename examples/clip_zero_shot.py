"""CLIP on embedded data: digits with template captions -> zero-shot classifier -> WiSE-FT.

    python examples/clip_zero_shot.py [--epochs 25] [--labels 5] [--output clip_output]

Trains CLIP (small CNN + one-block text transformer) on digit images paired with captions,
builds a zero-shot classifier from held-out prompt templates (ensembled), fine-tunes a copy on a
few labels per class, mixes the two in weight space (WiSE-FT) for several alphas, saves the
classifier to .keras and exports a SavedModel with a float endpoint and an encoded-bytes endpoint.
"""

import argparse
import os

import numpy as np

import keras_transfer as kt
from keras_transfer.demos import clip as clip_demo
from keras_transfer.models import build_zero_shot_classifier
from keras_transfer.models import export_zero_shot_classifier


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--labels", type=int, default=5, help="Labels per class for fine-tuning.")
    parser.add_argument("--output", default="clip_output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)

    clip, tokenizer, (x, _, y), (x_test, _, y_test), seconds = clip_demo.train_digit_clip(
        epochs=args.epochs, seed=args.seed)
    x, x_test = x.astype("float32"), x_test.astype("float32")
    print(f"CLIP trained in {seconds:.0f} s, logit scale {clip.get_logit_scale():.1f}")

    zero_shot = build_zero_shot_classifier(
        clip, kt.datasets.digit_class_names(), kt.datasets.HELDOUT_TEMPLATES, tokenizer)
    print(f"zero-shot accuracy (held-out prompts, ensembled): {accuracy(zero_shot, x_test, y_test):.3f}")

    # Fine-tune a copy on a few labels per class (its head starts at the zero-shot head),
    # then mix zero-shot and fine-tuned weights: wise_ft(zero_shot, fine_tuned, alpha).
    curve = clip_demo.wise_ft_curve(zero_shot, x, y, x_test, y_test, labels_per_class=args.labels,
                                    seed=args.seed)
    for alpha, value in curve.items():
        print(f"WiSE-FT alpha={alpha:.2f}: test accuracy {value:.3f}")

    zero_shot.save(os.path.join(args.output, "zero_shot.keras"))
    export_zero_shot_classifier(zero_shot, os.path.join(args.output, "zero_shot_savedmodel"))
    print(f"Saved {args.output}/zero_shot.keras and the SavedModel (serve, serve_image_bytes).")


if __name__ == "__main__":
    main()
