"""Visual prompt tuning on digits: linear probe vs VPT-shallow vs VPT-deep vs full fine-tuning.

A tiny ViT (keras-hub's `ViTBackbone` when keras-hub is installed, else the same
architecture from `PatchEmbedding` + `ViTBlock`) is pre-trained from scratch on the
digits 0-4 (8x8, all training labels), then transferred to the digits 5-9 with
`--labels` labelled examples per class, four ways: a linear probe on the frozen class
token, VPT-shallow and VPT-deep (`recipes.add_visual_prompts`: prompts + head train) and
full fine-tuning. Reported: trainable parameters (share of the backbone) and target test
accuracy, median and range over seeds (each seed re-draws the pre-training, the labelled
examples and the initialisations).

Usage: python -m benchmarks.visual_prompt_tuning_digits [--quick] [--seeds 3] [--labels 20]
"""

import argparse
import dataclasses
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer import layers  # noqa: E402
from keras_transfer import recipes  # noqa: E402

METHODS = ("linear probe", "VPT-shallow", "VPT-deep", "full fine-tune")
# Jia et al., ECCV 2022, Table 1 (ViT-B/16 pre-trained on ImageNet-21k, mean top-1 %).
PAPER = {
    "linear probe": {"FGVC": 79.32, "VTAB-1k Natural": 68.93},
    "VPT-shallow": {"FGVC": 84.62, "VTAB-1k Natural": 76.81},
    "VPT-deep": {"FGVC": 89.11, "VTAB-1k Natural": 78.48},
    "full fine-tune": {"FGVC": 88.54, "VTAB-1k Natural": 75.88},
}


def build_backbone(config):
    """A ViT backbone `(8, 8, 1) -> (tokens, dim)`: keras-hub's if installed, else ours."""
    try:
        import keras_hub
    except ImportError:
        keras_hub = None
    if keras_hub is not None:
        return keras_hub.models.ViTBackbone(image_shape=(8, 8, 1), patch_size=2, **config), "keras-hub ViTBackbone"
    images = keras.Input((8, 8, 1))
    x = layers.PatchEmbedding(2, config["hidden_dim"])(images)
    for _ in range(config["num_layers"]):
        x = layers.ViTBlock(config["num_heads"], config["mlp_dim"])(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    return keras.Model(images, x, name="vit"), "PatchEmbedding + ViTBlock"


def classifier(backbone, num_classes):
    images = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(num_classes, name="head")(backbone(images)[:, 0])
    return keras.Model(images, logits)


def compile_model(model, learning_rate, eager=False):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=eager,  # --quick: a few steps cost less eagerly than tracing each model
    )


def transfer(method, source_backbone, split, settings, seed, num_prompts):
    """The target model of one method, trained; returns (accuracy %, trainable parameters).

    The source backbone is left as it was: VPT copies it, the linear probe freezes it for its
    own fit only, full fine-tuning trains a copy.
    """
    keras.utils.set_random_seed(seed)
    backbone = source_backbone
    if method == "full fine-tune":  # keras-hub ViTs do not go through clone_model
        backbone = source_backbone.__class__.from_config(source_backbone.get_config())
        backbone.set_weights(source_backbone.get_weights())
    model = classifier(backbone, len(np.unique(split.target_train[1])))
    learning_rate = settings["probe_lr"]
    if method.startswith("VPT"):
        model = recipes.add_visual_prompts(model, num_prompts, deep=method == "VPT-deep", seed=seed)
    elif method == "full fine-tune":
        learning_rate = settings["fine_tune_lr"]
    backbone.trainable = method == "full fine-tune"
    compile_model(model, learning_rate, settings["eager"])
    x, y = split.target_train
    model.fit(x, y, batch_size=16, epochs=settings["target_epochs"], steps_per_epoch=settings["steps"], verbose=0)
    accuracy = model.evaluate(*split.target_test, batch_size=256, verbose=0)[1]
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    source_backbone.trainable = True
    return 100.0 * accuracy, trainable


def scaled(split):
    """The split with pixels in [0, 1]."""
    names = ("source_train", "source_test", "target_train", "target_test")
    return dataclasses.replace(split, **{n: (getattr(split, n)[0] / 255.0, getattr(split, n)[1]) for n in names})


def run_seed(seed, args, settings):
    split = scaled(datasets.digits_source_target(image_size=8, labels_per_class=args.labels, seed=seed))
    keras.utils.set_random_seed(seed)
    backbone, kind = build_backbone(settings["vit"])
    source = classifier(backbone, 5)
    compile_model(source, 1e-3, settings["eager"])
    source.fit(
        *split.source_train,
        batch_size=64,
        epochs=settings["source_epochs"],
        steps_per_epoch=settings["steps"],
        verbose=0,
    )
    source_accuracy = 100.0 * source.evaluate(*split.source_test, batch_size=256, verbose=0)[1]
    results = {m: transfer(m, backbone, split, settings, seed, args.prompts) for m in METHODS}
    return source_accuracy, results, kind, int(backbone.count_params())


def summarize(runs):
    """{method: {"median", "low", "high", "trainable"}} over the seeds."""
    summary = {}
    for method in METHODS:
        accuracies = [results[method][0] for _, results, _, _ in runs]
        summary[method] = {
            "median": statistics.median(accuracies),
            "low": min(accuracies),
            "high": max(accuracies),
            "trainable": runs[0][1][method][1],
        }
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 2 steps per phase, eager, 2 layers (CI)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", type=int, default=20, help="labelled target examples per class")
    parser.add_argument("--prompts", type=int, default=5, help="prompt tokens per layer")
    args = parser.parse_args(argv)
    vit = dict(num_layers=4, num_heads=4, hidden_dim=32, mlp_dim=64)
    settings = dict(
        vit=vit, source_epochs=40, target_epochs=60, probe_lr=1e-2, fine_tune_lr=1e-3, steps=None, eager=False
    )
    if args.quick:
        args.seeds = 1
        small = dict(num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16)
        settings.update(vit=small, source_epochs=1, target_epochs=1, steps=2, eager=True)
    start = time.time()
    runs = [run_seed(seed, args, settings) for seed in range(args.seeds)]
    summary = summarize(runs)
    backbone_params = runs[0][3]
    print(
        f"{runs[0][2]}: {backbone_params} parameters; source (digits 0-4) test accuracy "
        f"{statistics.median(r[0] for r in runs):.1f} % (median of {args.seeds} seeds)"
    )
    print(f"target: digits 5-9, {args.labels} labels per class, {args.prompts} prompts per layer\n")
    print("| method | trainable params | % of backbone | accuracy % median [min, max] | paper FGVC / VTAB-Natural |")
    print("|---|---|---|---|---|")
    for method in METHODS:
        row = summary[method]
        paper = PAPER[method]
        print(
            f"| {method} | {row['trainable']} | {100 * row['trainable'] / backbone_params:.2f} | "
            f"{row['median']:.1f} [{row['low']:.1f}, {row['high']:.1f}] | "
            f"{paper['FGVC']} / {paper['VTAB-1k Natural']} |"
        )
    print(f"\n{time.time() - start:.0f} s")
    return {"source_accuracy": statistics.median(r[0] for r in runs), "backbone_params": backbone_params, **summary}


if __name__ == "__main__":
    main(sys.argv[1:])
