"""Demo: choosing what and how to transfer, on the embedded digits.

Five steps, each printed as a table and collected in `choosing.md`:

1. rank candidate source models for a target with LogME (`rank_transferability`), next to
   the linear-probe accuracy each one actually gives;
2. `fine_tune(..., blocks="auto")`: which block to fine-tune for a shifted target (digits-M),
   chosen on a validation split;
3. the when-to-transfer table: linear probe, fine-tune and from scratch for a small and a
   large target that is similar (digits 5-9) or different (digits-M 5-9) to the source;
4. multi-task training of digits 0-4 and 5-9 with one trunk (`MultiTaskModel`);
5. a curriculum from transfer scoring (`transfer_difficulty`, `curriculum_dataset`) against
   uniform batches from the same initial weights.

The source model is a simple_cnn trained on digits 0-4 (grey repeated to RGB, so that the
colour digits-M target fits its input). `benchmarks/when_to_transfer.py` runs step 3 over
seeds and more settings.
"""

import os
import time
import warnings

import keras
import numpy as np
import scipy.stats
import tensorflow as tf

from keras_transfer import datasets
from keras_transfer import models
from keras_transfer import recipes
from keras_transfer import schedules

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def _settings(quick):
    if quick:
        return dict(
            image_size=8,
            source_examples=100,
            widths=(4, 8, 8),
            source_epochs=1,
            target_epochs=1,
            small=3,
            large=6,
            blocks_labels=3,
            multi_task_epochs=1,
            curriculum_steps=5,
            curriculum_examples=200,
            test_examples=100,
            step_length=1,
        )
    return dict(
        image_size=16,
        source_examples=None,
        widths=(16, 32, 64),
        source_epochs=15,
        target_epochs=30,
        small=3,
        large=50,
        blocks_labels=10,
        multi_task_epochs=15,
        curriculum_steps=300,
        curriculum_examples=None,
        test_examples=None,
        step_length=40,
    )


def markdown_table(header, rows):
    """A markdown table as a string (one line per row, columns padded)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


class _Report:
    """Prints each section and keeps it for the markdown file."""

    def __init__(self):
        self.parts = []

    def section(self, title, text=""):
        print(f"\n{title}")
        self.parts.append(f"## {title}\n")
        if text:
            print(text)
            self.parts.append(text + "\n")

    def note(self, text):
        print(text)
        self.parts.append(text + "\n")

    def table(self, header, rows):
        text = markdown_table(header, rows)
        print(text)
        self.parts.append(text + "\n")

    def write(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write("# keras-transfer demo: choosing what and how to transfer\n\n" + "\n".join(self.parts))
        return path


def _data(cfg, seed=0):
    """`{"plain": f, "digits-M": f}`: `f(n)` gives the target digits 5-9 with `n` labels per class.

    `f(n)` returns `(train, test, split)`, float32 images; `split` is the `TransferSplit`, which
    also holds the source task. Both settings label the same examples.
    """
    size = cfg["image_size"]
    plain = datasets.load_digits(image_size=size, channels=3, seed=seed)
    blended = datasets.load_digits_m(image_size=size, seed=seed)
    as_float = lambda pair: (pair[0].astype("float32"), pair[1])  # noqa: E731

    def split(data, n):
        s = datasets.split_source_target(*data, SOURCE_CLASSES, TARGET_CLASSES, labels_per_class=n, seed=seed)
        x_test, y_test = s.target_test
        keep = slice(cfg["test_examples"])  # quick: the first test examples only
        return as_float(s.target_train), as_float((x_test[keep], y_test[keep])), s

    return {"plain": lambda n: split(plain, n), "digits-M": lambda n: split(blended, n)}


def _new_classifier(cfg, input_shape, seed):
    keras.utils.set_random_seed(seed)
    model = recipes.build_classifier("simple_cnn", 5, input_shape, widths=cfg["widths"])
    return recipes.compile_for_fine_tuning(model, learning_rate=2e-3)


def _train_source(cfg, x, y, seed=0):
    model = _new_classifier(cfg, x.shape[1:], seed)
    model.fit(x, y, batch_size=32, epochs=cfg["source_epochs"], verbose=0)
    return model


def _probe_accuracy(source, train, test):
    model = recipes.replace_head(source, 5)
    recipes.freeze_backbone(model)
    recipes.linear_probe(model, *train, C=1.0)
    return recipes.evaluate_accuracy(model, *test)


def rank_sources(report, cfg, source, source_data, target):
    """Step 1: LogME ranking of three candidate sources, beside each one's probe accuracy."""
    (x_source, y_source), train, test = source_data, target[0], target[1]
    candidates = {
        "digits 0-4": source,
        "inverted digits 0-4": _train_source(cfg, 255.0 - x_source, y_source),
        "random init": _new_classifier(cfg, x_source.shape[1:], seed=1),
    }
    ranking = recipes.rank_transferability(candidates, *train, metric="logme")
    probe = {name: _probe_accuracy(model, train, test) for name, model in candidates.items()}
    report.section(
        f"[1/5] Which source model? LogME on {len(train[0])} labelled target images (digits 5-9), "
        "beside the linear-probe test accuracy each candidate gives"
    )
    rows = [[r["rank"], r["name"], f"{r['score']:.3f}", f"{probe[r['name']]:.3f}"] for r in ranking]
    report.table(["LogME rank", "candidate", "LogME", "probe test accuracy"], rows)
    tau = scipy.stats.kendalltau([ranking.scores[n] for n in candidates], [probe[n] for n in candidates]).statistic
    report.note(f"Kendall's tau between the LogME scores and the probe accuracies: {tau:.2f} (1: the same order)")
    return {"ranking": ranking.names, "logme": ranking.scores, "probe_accuracy": probe, "kendall_tau": float(tau)}


def _halves(pair, seed=0):
    """A random half of `(x, y)` and the other half."""
    x, y = pair
    order = np.random.default_rng(seed).permutation(len(y))
    first, rest = order[: len(y) // 2], order[len(y) // 2 :]
    return (x[first], y[first]), (x[rest], y[rest])


def choose_blocks(report, cfg, source, split):
    """Step 2: `fine_tune(blocks="auto")` on digits-M, validation accuracy of each block choice."""
    train, held_out, _ = split(cfg["blocks_labels"])
    val, test = _halves(held_out)
    model = recipes.replace_head(source, 5)
    model, histories = recipes.fine_tune(
        model,
        *train,
        validation_data=val,
        blocks="auto",
        epochs=cfg["target_epochs"],
        learning_rate=1e-3,
        batch_size=16,
        verbose=0,
    )
    chosen, scores = histories["blocks"]["chosen"], histories["blocks"]["val_accuracy"]
    test_accuracy = recipes.evaluate_accuracy(model, *test)
    report.section(
        f'[2/5] Which blocks to fine-tune? fine_tune(blocks="auto") on digits-M 5-9, '
        f"{len(train[0])} training and {len(val[0])} validation images (linear probe first), "
        f"tested on {len(test[0])} others"
    )
    rows = [[name, f"{acc:.3f}", "<- chosen" if name == chosen else ""] for name, acc in scores.items()]
    report.table(["blocks fine-tuned", "validation accuracy", ""], rows)
    report.note(f"Chosen: {chosen}; its test accuracy: {test_accuracy:.3f}")
    return {"chosen": chosen, "val_accuracy": scores, "test_accuracy": test_accuracy}


def _block_probe_accuracy(source, train, test):
    """A logistic regression on the flattened output of the source's second block."""
    extractor = recipes.feature_extractor(source, layer="block2_pool")
    features = recipes.extract_features(extractor, train[0], use_cache=False)
    kernel, bias, _ = recipes.fit_logistic_regression(features, train[1], 5, C=1.0)
    logits = recipes.extract_features(extractor, test[0], use_cache=False) @ kernel + bias
    return float(np.mean(np.argmax(logits, axis=1) == test[1]))


METHODS = ("linear probe", "block2 probe", "fine-tune", "from scratch")


def _methods(cfg, source, train, test):
    """{method: test accuracy} of each of `METHODS` on one target."""
    x, y = train
    tuned = recipes.replace_head(source, 5)
    recipes.fine_tune(
        tuned, x, y, probe=None, epochs=cfg["target_epochs"], learning_rate=1e-3, batch_size=16, verbose=0
    )
    scratch = _new_classifier(cfg, x.shape[1:], seed=0)
    scratch.fit(x, y, batch_size=16, epochs=cfg["target_epochs"], verbose=0)
    return {
        "linear probe": _probe_accuracy(source, train, test),
        "block2 probe": _block_probe_accuracy(source, train, test),
        "fine-tune": recipes.evaluate_accuracy(tuned, *test),
        "from scratch": recipes.evaluate_accuracy(scratch, *test),
    }


# The usual decision table: (size, similarity) -> (its advice, the measured methods that follow it).
RECOMMENDED = {
    ("small", "similar"): ("linear probe", ("linear probe",)),
    ("large", "similar"): ("fine-tune", ("fine-tune",)),
    ("small", "different"): ("probe earlier layers", ("block2 probe",)),
    ("large", "different"): ("from scratch (or fine-tune)", ("from scratch", "fine-tune")),
}


def when_to_transfer(report, cfg, source, data):
    """Step 3: the when-to-transfer table, one seed (the benchmark runs three)."""
    results, rows = {}, []
    for similarity, key in (("similar", "plain"), ("different", "digits-M")):
        for size in ("small", "large"):
            n = cfg[size]
            train, test, _ = data[key](n)
            scores = _methods(cfg, source, train, test)
            best = [m for m in METHODS if scores[m] == max(scores.values())]
            results[(size, similarity)] = scores
            advice, following = RECOMMENDED[(size, similarity)]
            target = "digits 5-9" if key == "plain" else "digits-M 5-9"
            rows.append(
                [f"{size} ({n}/class)", f"{similarity} ({target})"]
                + [f"{scores[m]:.3f}" for m in METHODS]
                + [" = ".join(best), advice, "yes" if set(best) & set(following) else "no"]
            )
    report.section("[3/5] When to transfer? Target test accuracy by target size and similarity to the source (1 seed)")
    report.table(["size", "target", *METHODS, "best", "usual advice", "held"], rows)
    report.note(
        "block2 probe: a logistic regression on the flattened output of the source's second block. "
        "benchmarks/when_to_transfer.py runs this table over three seeds."
    )
    return results


def multi_task(report, cfg, source_train, source_test, target):
    """Step 4: one trunk, a head for digits 0-4 (all labels) and one for 5-9 (few labels)."""
    (x_a, y_a), (train_b, test_b) = source_train, target
    keras.utils.set_random_seed(0)
    classifier = recipes.build_classifier("simple_cnn", 5, x_a.shape[1:], widths=cfg["widths"])
    model = models.MultiTaskModel(recipes.feature_extractor(classifier), {"digits_0_4": 5, "digits_5_9": 5})
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    tasks = {"digits_0_4": (x_a, y_a), "digits_5_9": train_b}
    data = datasets.multi_task_dataset(tasks, "uniform", batch_size=32, seed=0)
    model.fit(data, epochs=cfg["multi_task_epochs"], verbose=0, shuffle=False)
    accuracy = {}
    for name, (x, y) in (("digits_0_4", source_test), ("digits_5_9", test_b)):
        accuracy[name] = float(np.mean(model.predict(x, batch_size=256, verbose=0)[name].argmax(-1) == y))
    report.section(
        f"[4/5] Multi-task: one simple_cnn trunk, two heads, {len(data) * cfg['multi_task_epochs']} mixed batches "
        "(uniform task sampling)"
    )
    rows = [[name, len(tasks[name][0]), f"{accuracy[name]:.3f}"] for name in tasks]
    report.table(["task", "training examples", "test accuracy"], rows)
    return accuracy


def _all_target_labels(cfg, seed=0):
    """Every training and test example of digits 5-9 (labels 0-4), grey repeated to RGB."""
    (x, y), (x_test, y_test) = datasets.load_digits(image_size=cfg["image_size"], channels=3, seed=seed)
    train, test = y >= 5, y_test >= 5
    return (x[train].astype("float32"), y[train] - 5), (x_test[test].astype("float32"), y_test[test] - 5)


def curriculum(report, cfg, teacher):
    """Step 5: transfer-scored curriculum vs uniform batches, the same network and initial weights."""
    (x, y), test = _all_target_labels(cfg)
    keep = slice(cfg["curriculum_examples"])  # quick: the first examples only
    x, y = x[keep], y[keep]
    difficulty = recipes.transfer_difficulty(teacher, x, y, C=1.0)
    steps = cfg["curriculum_steps"]
    orders = {
        "curriculum (easiest first)": (
            difficulty,
            schedules.FixedExponentialPacing(0.1, 2.0, step_length=cfg["step_length"], total_steps=steps),
        ),
        "uniform batches": (np.zeros(len(x)), schedules.StepPacing(1.0, step_length=1, total_steps=steps)),
    }
    model = _new_classifier(cfg, x.shape[1:], seed=0)
    start = model.get_weights()
    accuracy = {}
    for name, (scores, pacing) in orders.items():
        model.set_weights(start)
        recipes.compile_for_fine_tuning(model, learning_rate=1e-3)  # a fresh optimizer per order
        batches = datasets.curriculum_dataset(x, y, scores, pacing, batch_size=16, balance_classes=True)
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
        accuracy[name] = recipes.evaluate_accuracy(model, *test)
    report.section(
        f"[5/5] Curriculum: {steps} batches of 16 from {len(x)} digits 5-9, ordered by transfer scoring "
        "(a classifier on the digits 0-4 model's features), same initial weights"
    )
    report.table(["order", "test accuracy"], [[name, f"{acc:.3f}"] for name, acc in accuracy.items()])
    return accuracy


def run(output_dir, quick=False):
    """Runs the five steps; prints each table, writes `choosing.md`, returns the numbers.

    Args:
        output_dir: the folder of `choosing.md` (created).
        quick: tiny settings (8 px, a tiny network, one epoch: seconds, for tests).

    Returns:
        A dict with the keys "source_accuracy", "ranking", "blocks", "when_to_transfer",
        "multi_task", "curriculum", "report" (the markdown file's path), "step_seconds" and
        "seconds".
    """
    # Quick mode trains each of its ~17 tiny models for a few steps: running them eagerly costs
    # less than tracing a graph for each (measured: 15 s against 25 s on 2 cores).
    eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(quick or eager)
    try:
        with warnings.catch_warnings():
            # tf.data's own functions stay traced, as they should; TensorFlow warns that they do.
            warnings.filterwarnings("ignore", message="Even though the `tf.config.experimental_run_functions_eagerly`")
            return _run(output_dir, _settings(quick))
    finally:
        tf.config.run_functions_eagerly(eager)


def _run(output_dir, cfg):
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    data = _data(cfg)
    _, _, base = data["plain"](cfg["small"])
    keep = slice(cfg["source_examples"])  # quick: the first examples only
    source_train = (base.source_train[0][keep].astype("float32"), base.source_train[1][keep])
    source_test = (base.source_test[0].astype("float32"), base.source_test[1])
    source = _train_source(cfg, *source_train)
    source_accuracy = recipes.evaluate_accuracy(source, *source_test)
    print(
        f"Source model: simple_cnn at {cfg['image_size']} px trained on digits 0-4 "
        f"({len(source_train[0])} images); test accuracy {source_accuracy:.3f}"
    )
    report = _Report()
    report.parts.append(f"Source model: simple_cnn trained on digits 0-4, test accuracy {source_accuracy:.3f}.\n")
    results = {"source_accuracy": source_accuracy}
    steps = {
        "ranking": lambda: rank_sources(report, cfg, source, source_train, data["plain"](cfg["large"])[:2]),
        "blocks": lambda: choose_blocks(report, cfg, source, data["digits-M"]),
        "when_to_transfer": lambda: when_to_transfer(report, cfg, source, data),
        "multi_task": lambda: multi_task(report, cfg, source_train, source_test, data["plain"](cfg["small"])[:2]),
        "curriculum": lambda: curriculum(report, cfg, source),
    }
    results["step_seconds"] = {}
    for name, step in steps.items():
        step_start = time.perf_counter()
        results[name] = step()
        results["step_seconds"][name] = time.perf_counter() - step_start
    results["report"] = report.write(os.path.join(output_dir, "choosing.md"))
    results["seconds"] = time.perf_counter() - start
    print(f"\nReport: {results['report']} ({results['seconds']:.0f} s)")
    return results
