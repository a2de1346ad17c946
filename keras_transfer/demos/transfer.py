"""Demo: pretrain on digits 0-4, transfer to 5-9 with few labels; scratch vs probe vs FT vs LP-FT."""

import os
import time

import keras

from keras_transfer import datasets
from keras_transfer import recipes
from keras_transfer.demos import report

IMAGE_SIZE = 16


def _settings(quick):
    if quick:
        return dict(source_epochs=2, target_epochs=2, labels_per_class=5, widths=(8, 16, 32))
    return dict(source_epochs=15, target_epochs=30, labels_per_class=3, widths=(16, 32, 64))


def _pretrain_source(split, input_shape, cfg):
    source = recipes.build_classifier("simple_cnn", len(split.source_classes), input_shape, widths=cfg["widths"])
    recipes.compile_for_fine_tuning(source, learning_rate=2e-3)
    source.fit(*split.source_train, batch_size=32, epochs=cfg["source_epochs"], verbose=1)
    return source


def _scratch(source, x, y, n_classes, cfg):
    model = recipes.build_classifier("simple_cnn", n_classes, x.shape[1:], widths=cfg["widths"])
    recipes.compile_for_fine_tuning(model, learning_rate=2e-3)
    model.fit(x, y, batch_size=16, epochs=cfg["target_epochs"], verbose=0)
    return model


def _probe(source, x, y, n_classes, cfg):
    model = recipes.replace_head(source, n_classes)
    recipes.freeze_backbone(model)
    recipes.linear_probe(model, x, y)
    recipes.compile_for_fine_tuning(model)
    return model


def _fine_tune(probe):
    def train(source, x, y, n_classes, cfg):
        model = recipes.replace_head(source, n_classes)
        recipes.fine_tune(
            model, x, y, probe=probe, epochs=cfg["target_epochs"], learning_rate=1e-3, batch_size=16, verbose=0
        )
        return model

    return train


METHODS = (
    ("from scratch", "[2/5] From scratch on the target labels", _scratch),
    ("linear probe", "[3/5] Linear probe (convex, frozen source backbone)", _probe),
    ("fine-tune", "[4/5] Fine-tune everything (new random head)", _fine_tune(None)),
    ("LP-FT", "[5/5] Linear probe, then fine-tune (LP-FT)", _fine_tune("convex")),
)


def run(output_dir, quick=False, seed=0):
    """Runs the transfer tour; returns {method: target test accuracy}."""
    os.makedirs(output_dir, exist_ok=True)
    cfg = _settings(quick)
    keras.utils.set_random_seed(seed)
    split = datasets.digits_source_target(image_size=IMAGE_SIZE, labels_per_class=cfg["labels_per_class"], seed=seed)
    input_shape = split.source_train[0].shape[1:]
    print(
        f"Source task: digits {split.source_classes}, {len(split.source_train[0])} labelled images. "
        f"Target task: digits {split.target_classes}, {cfg['labels_per_class']} labels per class "
        f"({len(split.target_train[0])} images), {len(split.target_test[0])} test images."
    )

    print("\n[1/5] Pretraining the source model (simple_cnn, all weights trainable)")
    source = _pretrain_source(split, input_shape, cfg)
    source_accuracy = recipes.evaluate_accuracy(source, *split.source_test)
    print(f"Source test accuracy: {source_accuracy:.3f}")

    results, models, seconds = {}, {}, {}
    for i, (name, title, train) in enumerate(METHODS):
        print(("\n" if i == 0 else "") + title)
        start = time.perf_counter()
        models[name] = train(source, *split.target_train, len(split.target_classes), cfg)
        seconds[name] = time.perf_counter() - start
        results[name] = recipes.evaluate_accuracy(models[name], *split.target_test)

    rows = [[name, f"{acc:.3f}", f"{seconds[name]:.1f}"] for name, acc in results.items()]
    report.print_table(["method", "target test accuracy", "seconds"], rows)
    best = max(results, key=results.get)
    plot_path = os.path.join(output_dir, "transfer.png")
    report.bar_plot(
        results,
        plot_path,
        title=f"digits {split.source_classes[0]}-{split.source_classes[-1]} -> "
        f"{split.target_classes[0]}-{split.target_classes[-1]}, {cfg['labels_per_class']} labels/class",
        ylabel="target test accuracy",
    )
    export_path = os.path.join(output_dir, "best_model")
    models[best].export(export_path, verbose=False)
    models[best].save(os.path.join(output_dir, "best_model.keras"))
    print(f"Best: {best} ({results[best]:.3f}). Plot: {plot_path}. SavedModel: {export_path}")
    return {"source_accuracy": source_accuracy, "target_accuracy": results, "best": best}
