"""Demo: adapters on a frozen pretrained CNN, per-task adapter files, folding back for serving."""

import os

import keras
import numpy as np

from keras_transfer import datasets
from keras_transfer import recipes
from keras_transfer.demos import report

IMAGE_SIZE = 16


def _settings(quick):
    if quick:
        return dict(source_epochs=3, target_epochs=6, labels_per_class=10, widths=(8, 16, 32))
    return dict(source_epochs=15, target_epochs=40, labels_per_class=10, widths=(16, 32, 64))


def _train(model, x, y, epochs, learning_rate, seed):
    recipes.linear_probe(model, x, y, seed=seed)  # a convex head first, then the adapters
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=25, epochs=epochs, verbose=0)
    return model


KINDS = {
    "conv series": dict(kind="conv_series"),
    "conv parallel": dict(kind="conv_parallel"),
    "bottleneck M=4": dict(kind="bottleneck", bottleneck_dim=4),
    "LoRA r=2": dict(kind="lora", rank=2),
}


def _compare_adapters(source, target, x, y, x_test, y_test, cfg, seed, results):
    """Step 2: every adapter kind and a linear probe on the frozen backbone; returns the adapted models."""
    rows, adapted = [], {}
    for name, options in KINDS.items():
        options = dict(options)
        model = recipes.add_adapters(target, r"block\d_conv", options.pop("kind"), **options)
        _train(model, x, y, cfg["target_epochs"], 3e-3, seed)
        accuracy = recipes.evaluate_accuracy(model, x_test, y_test)
        share = recipes.adapter_parameter_report(model)["trainable_percent"]
        adapted[name] = model
        results[name] = {"accuracy": accuracy, "trainable_percent": share}
        rows.append([name, f"{share:.1f}", f"{accuracy:.3f}"])
    probe = recipes.replace_head(source, 5)
    recipes.freeze_backbone(probe)
    recipes.linear_probe(probe, x, y, seed=seed)
    results["linear probe"] = {"accuracy": recipes.evaluate_accuracy(probe, x_test, y_test)}
    rows.append(
        [
            "linear probe",
            f"{recipes.adapter_parameter_report(probe)['trainable_percent']:.1f}",
            f"{results['linear probe']['accuracy']:.3f}",
        ]
    )
    report.print_table(["method", "trainable %", "target accuracy"], rows)
    print()
    print(recipes.format_parameter_report(recipes.adapter_parameter_report(adapted["conv series"])))
    return adapted


def _switch_tasks(model, tasks, output_dir, cfg, seed, results):
    """Step 3: one adapter weight file per task, loaded into the same model; returns {task: file}."""
    files = {}
    for index, (task, (tx, ty, _, _)) in enumerate(tasks.items()):
        if index:
            _train(model, tx, ty, cfg["target_epochs"], 3e-3, seed)
        files[task] = recipes.save_adapter_weights(model, os.path.join(output_dir, f"{task.replace(' ', '_')}.npz"))
    switch_rows = []
    for active, path in files.items():
        recipes.load_adapter_weights(model, path)
        accs = [recipes.evaluate_accuracy(model, tx_test, ty_test) for _, _, tx_test, ty_test in tasks.values()]
        switch_rows.append([active, f"{os.path.getsize(path) / 1024:.1f} KiB"] + [f"{a:.3f}" for a in accs])
        results[f"task {active}"] = dict(zip(tasks, accs))
    report.print_table(["active adapters", "file"] + [f"acc on {t}" for t in tasks], switch_rows)
    return files


def _fold(adapted, target, first_task_file, x_test, y_test, results):
    """Step 4: folded / merged models against the adapted ones."""
    fold_rows = []
    for name in ("conv series", "conv parallel", "LoRA r=2"):
        model = adapted[name]
        if name == "conv series":
            recipes.load_adapter_weights(model, first_task_file)
        folded = recipes.fold_adapters(model)
        error = float(np.max(np.abs(folded.predict(x_test, verbose=0) - model.predict(x_test, verbose=0))))
        same = folded.count_params() == target.count_params()
        fold_rows.append(
            [name, f"{error:.1e}", f"{recipes.evaluate_accuracy(folded, x_test, y_test):.3f}", "yes" if same else "no"]
        )
        results[f"fold {name}"] = {"max_abs_error": error, "original_architecture": same}
    report.print_table(["adapters", "max |folded - adapted|", "folded accuracy", "base architecture"], fold_rows)
    try:
        recipes.fold_adapters(adapted["bottleneck M=4"])
    except ValueError as error:
        print(f"bottleneck adapters are refused: {str(error)[:110]}...")


def run(output_dir, quick=False, seed=0):
    """Runs the adapters tour; returns a dict of accuracies, parameter shares and fold errors."""
    os.makedirs(output_dir, exist_ok=True)
    cfg = _settings(quick)
    keras.utils.set_random_seed(seed)
    split = datasets.digits_source_target(image_size=IMAGE_SIZE, labels_per_class=cfg["labels_per_class"], seed=seed)
    shape = split.source_train[0].shape[1:]
    print("[1/5] Pretraining simple_cnn on digits 0-4 (the frozen backbone every task shares)")
    source = recipes.build_classifier("simple_cnn", 5, shape, widths=cfg["widths"])
    recipes.compile_for_fine_tuning(source, learning_rate=2e-3)
    source.fit(*split.source_train, batch_size=32, epochs=cfg["source_epochs"], verbose=0)
    print(f"source test accuracy {recipes.evaluate_accuracy(source, *split.source_test):.3f}")

    x, y = split.target_train
    x_test, y_test = split.target_test
    # A second task on the same backbone: the same digits 5-9, colour-inverted.
    tasks = {"digits 5-9": (x, y, x_test, y_test), "inverted 5-9": (255 - x, y, 255 - x_test, y_test)}
    target = recipes.replace_head(source, 5)
    recipes.freeze_backbone(target)

    print("\n[2/5] Inserting adapters after every conv (original weights copied and frozen)")
    results = {}
    adapted = _compare_adapters(source, target, x, y, x_test, y_test, cfg, seed, results)

    print("\n[3/5] Two tasks, one backbone: adapter-only weight files, switched without rebuilding")
    files = _switch_tasks(adapted["conv series"], tasks, output_dir, cfg, seed, results)

    print("\n[4/5] Folding conv adapters / merging LoRA into the convolutions for serving")
    _fold(adapted, target, files["digits 5-9"], x_test, y_test, results)

    print("\n[5/5] Plot")
    values = {name: results[name]["accuracy"] for name in list(KINDS) + ["linear probe"]}
    path = report.bar_plot(
        values,
        os.path.join(output_dir, "adapters_accuracy.png"),
        title="digits 0-4 -> 5-9, frozen backbone + adapters",
        ylabel="target accuracy",
    )
    print(f"wrote {path}")
    return results
