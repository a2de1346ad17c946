"""CLIP on the embedded digit captions: zero-shot accuracy, ensembling gain, recall@k, step cost.

For each seed: train CLIP on the training split with captions from the training
templates, then classify the held-out images zero-shot with prompts from the
held-out templates, one template at a time and all of them ensembled (CLIP
reported +3.5 points from ensembling on ImageNet), and measure recall@k of
held-out captions <-> images. Peer in the same run for the step cost: one
supervised step of each encoder (image encoder + linear head, text encoder +
linear head, sparse cross-entropy on the digit labels) on the same batch;
the ratio `CLIP step / (image step + text step)` is reported (median of many steps).
WiSE-FT: the zero-shot classifier fine-tuned on 5 labels per class, mixed with
the zero-shot weights at several alphas (Wortsman et al., 2022).

`--loss-type siglip` trains with SigLIP's pairwise sigmoid loss (Zhai et al. 2023) instead of
CLIP's softmax, everything else equal.

    python benchmarks/clip_digits.py [--quick] [--loss-type clip|siglip]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import statistics
import time

import keras
import numpy as np

from benchmarks import _clip_experiment as experiment
from benchmarks._common import print_table
from keras_transfer import datasets
from keras_transfer.layers import word_tokenizer
from keras_transfer.recipes import build_zero_shot_classifier


def _interleaved_medians(steps, repeats):
    """Median seconds of each step, timed round-robin so machine load hits all alike."""
    for step in steps.values():  # trace and warm up
        step()
        step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def step_cost(batch_size=64, repeats=30, seed=0):
    """Median seconds of one CLIP train step and of one supervised step per encoder."""
    keras.utils.set_random_seed(seed)
    (x, captions, y), _ = datasets.load_digit_captions(image_size=experiment.IMAGE_SIZE, seed=seed)
    tokenizer = word_tokenizer(list(captions), sequence_length=experiment.SEQUENCE_LENGTH)
    images = x[:batch_size].astype("float32")
    tokens = tokenizer(list(captions[:batch_size])).numpy()
    labels = y[:batch_size]

    clip = experiment.build_digit_clip(tokenizer.vocabulary_size())
    clip.compile(optimizer=keras.optimizers.Adam(1e-3))
    clip_batch = {"images": images, "token_ids": tokens}

    reference = experiment.build_digit_clip(tokenizer.vocabulary_size())
    image_model = keras.Sequential([reference.image_encoder, keras.layers.Dense(10)])
    image_model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    text_model = keras.Sequential(
        [
            keras.Input((experiment.SEQUENCE_LENGTH,), dtype="int32"),
            reference.text_encoder,  # the same tower as CLIP's (one transformer block, dropout 0.1)
            keras.layers.Dense(10),
        ]
    )
    text_model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    t = _interleaved_medians(
        {
            "clip": lambda: clip.train_on_batch(clip_batch),
            "image": lambda: image_model.train_on_batch(images, labels),
            "text": lambda: text_model.train_on_batch(tokens, labels),
        },
        repeats,
    )
    t_clip, t_image, t_text = t["clip"], t["image"], t["text"]
    return {
        "clip_ms": 1e3 * t_clip,
        "image_ms": 1e3 * t_image,
        "text_ms": 1e3 * t_text,
        "ratio": t_clip / (t_image + t_text),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--loss-type", choices=("clip", "siglip"), default="clip")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs

    runs = []
    for seed in range(seeds):
        model, tokenizer, train, test, seconds = experiment.train_digit_clip(
            epochs=epochs, seed=seed, loss_type=args.loss_type
        )
        result = experiment.evaluate_digit_clip(model, tokenizer, test)
        result["seconds"] = seconds
        zero_shot = build_zero_shot_classifier(
            model, datasets.digit_class_names(), datasets.HELDOUT_TEMPLATES, tokenizer
        )
        result["wise_ft"] = experiment.wise_ft_curve(
            zero_shot,
            train[0],
            train[2],
            test[0],
            test[2],
            labels_per_class=5,
            epochs=2 if args.quick else 20,
            seed=seed,
        )
        runs.append(result)
        print(
            f"seed {seed}: ensemble {result['ensemble']:.3f}, mean single template "
            f"{result['single_mean']:.3f}, train {seconds:.0f} s"
        )

    def stat(values):
        values = list(values)
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"

    n_test = len(test[0])
    print(
        f"\nZero-shot accuracy on {n_test} held-out digits with held-out prompt templates "
        f"({args.loss_type} loss, {epochs} epochs, {seeds} seed(s), mean ± sd)"
    )
    rows = [[f'"{t}"', stat(r["single_template"][t] for r in runs)] for t in datasets.HELDOUT_TEMPLATES]
    rows += [
        ["mean of single templates", stat(r["single_mean"] for r in runs)],
        ["worst single template", stat(min(r["single_template"].values()) for r in runs)],
        [f"ensemble of {len(datasets.HELDOUT_TEMPLATES)} templates", stat(r["ensemble"] for r in runs)],
        ["ensemble gain (points)", stat(100 * r["ensemble_gain"] for r in runs)],
        ["ensemble, classes as numerals", stat(r["ensemble_numerals"] for r in runs)],
    ]
    print_table(["prompt", "accuracy"], rows)

    print("\nRetrieval recall@k on the held-out images and captions")
    recall_rows = []
    for name, key in (("same class", "recall_class"), ("own pair only", "recall_pair")):
        recall_rows.append(
            [name]
            + [
                stat(r[key][f"{d}_recall@{k}"] for r in runs)
                for d in ("image_to_text", "text_to_image")
                for k in (1, 5, 10)
            ]
        )
    print_table(["match", "image->text @1", "@5", "@10", "text->image @1", "@5", "@10"], recall_rows)

    print(
        "\nWiSE-FT: zero-shot classifier fine-tuned on 5 labels per class (20 epochs), weights mixed "
        "as (1 - alpha) * zero-shot + alpha * fine-tuned; held-out accuracy"
    )
    alphas = list(runs[0]["wise_ft"])
    print_table(
        ["alpha"] + [f"{a:.2f}" for a in alphas], [["accuracy"] + [stat(r["wise_ft"][a] for r in runs) for a in alphas]]
    )

    cost = step_cost(repeats=3 if args.quick else 50)
    print("\nStep cost, batch 64 (median ms per `train_on_batch`, timed round-robin)")
    print_table(
        ["step", "ms"],
        [
            ["CLIP (both towers + symmetric loss)", f"{cost['clip_ms']:.1f}"],
            ["supervised image encoder + head", f"{cost['image_ms']:.1f}"],
            ["supervised text encoder + head", f"{cost['text_ms']:.1f}"],
            ["ratio CLIP / (image + text)", f"{cost['ratio']:.2f}"],
        ],
    )
    return {
        "ensemble": float(np.mean([r["ensemble"] for r in runs])),
        "single_mean": float(np.mean([r["single_mean"] for r in runs])),
        "ensemble_gain": float(np.mean([r["ensemble_gain"] for r in runs])),
        "recall_class": runs[0]["recall_class"],
        "step_cost": cost,
        "wise_ft": {a: float(np.mean([r["wise_ft"][a] for r in runs])) for a in alphas},
    }


if __name__ == "__main__":
    main()
