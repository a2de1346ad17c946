"""`keras-transfer finetune`: the real job on a folder of images."""

import os

from keras_transfer.datasets.image_folder import load_image_folder
from keras_transfer.recipes import backbones as backbones_lib
from keras_transfer.recipes.classifier import build_classifier
from keras_transfer.recipes.fine_tune import fine_tune
from keras_transfer.utils import validation


def parse_blocks(text):
    """'all' / 'first' / 'middle' / 'last', or comma-separated block names."""
    if text is None:
        return "all"
    text = text.strip()
    if text in ("all", "first", "middle", "last"):
        return text
    return [part.strip() for part in text.split(",") if part.strip()]


def finetune_folder(
    data,
    backbone="mobilenet_v3_small",
    weights=None,
    image_size=None,
    epochs=5,
    probe_epochs=0,
    batch_size=32,
    learning_rate=1e-4,
    blocks="all",
    validation_split=0.2,
    export=None,
    save=None,
    seed=0,
    verbose=1,
):
    """Linear probe then fine-tune a registry backbone on an image folder; optionally export.

    Returns:
        (model, summary dict with class names, example counts and validation/test metrics).
    """
    backbones_lib.get_spec(backbone)
    validation.check_non_negative_int("epochs", epochs)
    validation.check_non_negative_int("probe_epochs", probe_epochs)
    validation.check_positive_int("batch_size", batch_size)
    validation.check_fraction("validation_split", validation_split)
    folder = load_image_folder(
        data, image_size=image_size, batch_size=batch_size, validation_split=validation_split, seed=seed
    )
    model = build_classifier(
        backbone, len(folder.class_names), (*folder.image_size, 3), weights=weights
    )
    model, histories = fine_tune(
        model,
        folder.train,
        validation_data=folder.validation,
        probe="convex" if probe_epochs == 0 else "fit",
        probe_epochs=max(probe_epochs, 1),
        epochs=epochs,
        learning_rate=learning_rate,
        blocks=parse_blocks(blocks) if isinstance(blocks, str) or blocks is None else blocks,
        batch_size=batch_size,
        verbose=verbose,
        seed=seed,
    )
    summary = {
        "class_names": folder.class_names,
        "num_train": folder.num_train,
        "num_validation": folder.num_validation,
        "num_test": folder.num_test,
    }
    if folder.validation is not None:
        summary["validation"] = model.evaluate(folder.validation, verbose=0, return_dict=True)
    if folder.test is not None:
        summary["test"] = model.evaluate(folder.test, verbose=0, return_dict=True)
    if save:
        os.makedirs(os.path.dirname(os.path.abspath(save)), exist_ok=True)
        model.save(save)
        summary["saved"] = save
    if export:
        model.export(export, verbose=False)
        with open(os.path.join(export, "class_names.txt"), "w") as handle:
            handle.write("\n".join(folder.class_names) + "\n")
        summary["exported"] = export
    return model, summary


def run_from_args(args):
    _, summary = finetune_folder(
        args.data,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        probe_epochs=args.probe_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        blocks=args.blocks,
        validation_split=args.validation_split,
        export=args.export,
        save=args.save,
        seed=args.seed,
    )
    print(f"Classes: {', '.join(summary['class_names'])}")
    print(f"Examples: train {summary['num_train']}, validation {summary['num_validation']}, test {summary['num_test']}")
    for part in ("validation", "test"):
        if part in summary:
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in summary[part].items())
            print(f"{part}: {metrics}")
    for key in ("saved", "exported"):
        if key in summary:
            print(f"{key}: {summary[key]}")
    return summary
