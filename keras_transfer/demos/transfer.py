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


def run(output_dir, quick=False, seed=0):
    """Runs the transfer tour; returns {method: target test accuracy}."""
    os.makedirs(output_dir, exist_ok=True)
    cfg = _settings(quick)
    keras.utils.set_random_seed(seed)
    split = datasets.digits_source_target(
        image_size=IMAGE_SIZE, labels_per_class=cfg["labels_per_class"], seed=seed
    )
    input_shape = split.source_train[0].shape[1:]
    print(
        f"Source task: digits {split.source_classes}, {len(split.source_train[0])} labelled images. "
        f"Target task: digits {split.target_classes}, {cfg['labels_per_class']} labels per class "
        f"({len(split.target_train[0])} images), {len(split.target_test[0])} test images."
    )

    print("\n[1/5] Pretraining the source model (simple_cnn, all weights trainable)")
    source = recipes.build_classifier("simple_cnn", len(split.source_classes), input_shape, widths=cfg["widths"])
    recipes.compile_for_fine_tuning(source, learning_rate=2e-3)
    source.fit(*split.source_train, batch_size=32, epochs=cfg["source_epochs"], verbose=1)
    source_accuracy = recipes.evaluate_accuracy(source, *split.source_test)
    print(f"Source test accuracy: {source_accuracy:.3f}")

    results, models, seconds = {}, {}, {}
    x_t, y_t = split.target_train
    n_target = len(split.target_classes)

    def timed(name, fn):
        start = time.perf_counter()
        model = fn()
        seconds[name] = time.perf_counter() - start
        models[name] = model
        results[name] = recipes.evaluate_accuracy(model, *split.target_test)

    print("\n[2/5] From scratch on the target labels")

    def scratch():
        model = recipes.build_classifier("simple_cnn", n_target, input_shape, widths=cfg["widths"])
        recipes.compile_for_fine_tuning(model, learning_rate=2e-3)
        model.fit(x_t, y_t, batch_size=16, epochs=cfg["target_epochs"], verbose=0)
        return model

    timed("from scratch", scratch)

    print("[3/5] Linear probe (convex, frozen source backbone)")

    def probe():
        model = recipes.replace_head(source, n_target)
        recipes.freeze_backbone(model)
        recipes.linear_probe(model, x_t, y_t)
        recipes.compile_for_fine_tuning(model)
        return model

    timed("linear probe", probe)

    print("[4/5] Fine-tune everything (new random head)")

    def fine():
        model = recipes.replace_head(source, n_target)
        recipes.fine_tune(
            model, x_t, y_t, probe=None, epochs=cfg["target_epochs"], learning_rate=1e-3, batch_size=16, verbose=0
        )
        return model

    timed("fine-tune", fine)

    print("[5/5] Linear probe, then fine-tune (LP-FT)")

    def lpft():
        model = recipes.replace_head(source, n_target)
        recipes.fine_tune(
            model, x_t, y_t, probe="convex", epochs=cfg["target_epochs"], learning_rate=1e-3, batch_size=16,
            verbose=0,
        )
        return model

    timed("LP-FT", lpft)

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
