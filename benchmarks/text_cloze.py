"""Cloze pre-training then fine-tuning vs training from scratch, on sentences of the Python docs.

`keras_transfer.datasets.load_python_docs`: 1,842 unlabelled pre-training sentences of the
Python reference manual (CPython's `pydoc_data.topics`), a 5-class task (which group of the
manual a sentence comes from) with 1,665 labelled training and 554 held-out test sentences (the
last quarter of every topic; never seen in pre-training). A `TextTransformerEncoder(pooling=None)`
is pre-trained by `MaskedLanguageModel` (BERT's cloze task) on the pre-training sentences; a
classifier (the same encoder with mean pooling + a softmax Dense) is then fine-tuned end to end
on k labelled sentences per class, from the pre-trained weights or from a random init (same
architecture, same optimiser, epochs and learning rate). A linear probe (scikit-learn's
logistic regression on the frozen mean-pooled features, standardised) and TF-IDF + logistic
regression (a bag-of-words reference without any network) are scored on the same labels.
Every row is the test accuracy, mean ± std over seeds (the seed draws the labelled subset, the
init and the masks). TensorFlow runs on one thread.

    python benchmarks/text_cloze.py [--quick] [--seeds 0 1 2] [--pretrain-epochs 60]
        [--budgets 5 20 100] [--finetune-epochs 40] [--learning-rate 5e-4] [--max-tokens 1000]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._common import mean_std  # noqa: E402
from benchmarks._common import one_thread  # noqa: E402
from benchmarks._common import print_table  # noqa: E402
from keras_transfer.datasets import load_python_docs  # noqa: E402
from keras_transfer.datasets import python_docs_tokenizer  # noqa: E402
from keras_transfer.layers import TextTransformerEncoder  # noqa: E402
from keras_transfer.models import MaskedLanguageModel  # noqa: E402

METHODS = ("scratch", "pre-trained + fine-tune", "linear probe (random init)", "linear probe (pre-trained)", "TF-IDF")


def make_encoder(vocabulary_size, sequence_length, dim, layers, pooling):
    heads = max(1, dim // 32)
    return TextTransformerEncoder(
        vocabulary_size, sequence_length, embedding_dim=dim, num_layers=layers, num_heads=heads, pooling=pooling
    )


def pretrain(x_pretrain, vocabulary_size, dim, layers, epochs, seed, learning_rate=2e-3, encoder=None):
    """A token-level encoder after `epochs` of cloze pre-training, and the last masked accuracy.

    `encoder`: None (a new `make_encoder`), or an encoder to continue pre-training.
    """
    keras.utils.set_random_seed(seed)
    if encoder is None:
        encoder = make_encoder(vocabulary_size, x_pretrain.shape[1], dim, layers, pooling=None)
    model = MaskedLanguageModel(encoder, vocabulary_size=vocabulary_size, seed=seed)
    steps = max(1, epochs * (len(x_pretrain) // 64))
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=learning_rate, warmup_steps=steps // 10)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01))
    # Full batches of 64, reshuffled each epoch (the protocol the published table used).
    data = (
        tf.data.Dataset.from_tensor_slices(x_pretrain)
        .shuffle(len(x_pretrain), seed=seed)
        .batch(64, drop_remainder=True)
    )
    history = model.fit(data, epochs=epochs, verbose=0, shuffle=False) if epochs else None
    return encoder, (history.history["masked_accuracy"][-1] if history else float("nan"))


def classifier(token_encoder, num_classes, dim, layers):
    """Mean-pooled copy of `token_encoder` (same weights) + softmax Dense, as a functional model."""
    config = token_encoder.get_config()
    pooled = make_encoder(config["vocabulary_size"], config["sequence_length"], dim, layers, pooling="mean")
    pooled.build((None, config["sequence_length"]))
    pooled.set_weights(token_encoder.get_weights())
    inputs = keras.Input((config["sequence_length"],), dtype="int32")
    features = pooled(inputs)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(features)
    return keras.Model(inputs, outputs), keras.Model(inputs, features)


def fine_tune(token_encoder, x, y, x_test, y_test, dim, layers, epochs, learning_rate, seed):
    keras.utils.set_random_seed(seed)
    model, _ = classifier(token_encoder, int(y_test.max()) + 1, dim, layers)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # At least 20 steps per run whatever the number of labels.
    steps_per_epoch = max(1, -(-len(x) // 16))
    epochs = max(epochs, -(-20 // steps_per_epoch))
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return float(model.evaluate(x_test, y_test, batch_size=256, verbose=0)[1])


def linear_probe(token_encoder, x, y, x_test, y_test, dim, layers):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, features = classifier(token_encoder, int(y_test.max()) + 1, dim, layers)
    f_train, f_test = (
        features.predict(x, batch_size=256, verbose=0),
        features.predict(x_test, batch_size=256, verbose=0),
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return float(probe.fit(f_train, y).score(f_test, y_test))


def tfidf(texts, y, texts_test, y_test):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(sublinear_tf=True)
    probe = LogisticRegression(C=10.0, max_iter=2000)
    return float(probe.fit(vectorizer.fit_transform(texts), y).score(vectorizer.transform(texts_test), y_test))


def labelled_subset(y, per_class, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.where(y == c)[0], per_class, replace=False) for c in np.unique(y)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 20, 100], help="labels per class")
    parser.add_argument("--pretrain-epochs", type=int, default=60)
    parser.add_argument("--finetune-epochs", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=5e-4, help="fine-tuning (both arms)")
    parser.add_argument("--pretrain-learning-rate", type=float, default=2e-3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=1000, help="vocabulary cap (cost of the cloze head)")
    args = parser.parse_args(argv)
    one_thread()
    seeds, budgets, pre_epochs, ft_epochs = args.seeds, args.budgets, args.pretrain_epochs, args.finetune_epochs
    dim, layers, length = args.dim, args.layers, args.sequence_length
    if args.quick:
        seeds, budgets, pre_epochs, ft_epochs, dim, layers, length = [0], [5], 1, 2, 32, 1, 16
    x_pre, (x_train, y_train), (x_test, y_test) = load_python_docs(sequence_length=length, max_tokens=args.max_tokens)
    _, (t_train, _), (t_test, _) = load_python_docs(as_text=True)
    if args.quick:
        x_pre, x_test, y_test, t_test = x_pre[:256], x_test[::5], y_test[::5], t_test[::5]
    vocabulary_size = python_docs_tokenizer(length, args.max_tokens).vocabulary_size()
    results = {m: {b: [] for b in budgets} for m in METHODS}
    masked_accuracy, seconds = [], []
    for seed in seeds:
        start = time.time()
        pre_trained, accuracy = pretrain(
            x_pre, vocabulary_size, dim, layers, pre_epochs, seed, args.pretrain_learning_rate
        )
        seconds.append(time.time() - start)
        masked_accuracy.append(accuracy)
        keras.utils.set_random_seed(seed)
        random_init = make_encoder(vocabulary_size, length, dim, layers, pooling=None)
        random_init.build((None, length))
        print(f"seed {seed}: pre-trained in {seconds[-1]:.0f} s, last masked accuracy {accuracy:.3f}", flush=True)
        for budget in budgets:
            idx = labelled_subset(y_train, budget, seed)
            x, y = x_train[idx], y_train[idx]
            ft = dict(dim=dim, layers=layers, epochs=ft_epochs, learning_rate=args.learning_rate, seed=seed)
            scores = {
                "scratch": fine_tune(random_init, x, y, x_test, y_test, **ft),
                "pre-trained + fine-tune": fine_tune(pre_trained, x, y, x_test, y_test, **ft),
                "linear probe (random init)": linear_probe(random_init, x, y, x_test, y_test, dim, layers),
                "linear probe (pre-trained)": linear_probe(pre_trained, x, y, x_test, y_test, dim, layers),
                "TF-IDF": tfidf(t_train[idx], y, t_test, y_test),
            }
            for method, score in scores.items():
                results[method][budget].append(score)
            print(f"  {budget} labels/class: " + ", ".join(f"{m} {s:.3f}" for m, s in scores.items()), flush=True)
    print(
        f"\nPython-docs sentences, 5 classes, test n={len(y_test)} (majority class "
        f"{np.bincount(y_test).max() / len(y_test):.3f}); encoder dim {dim}, {layers} layers; "
        f"{pre_epochs} cloze epochs (last masked accuracy "
        f"{mean_std(masked_accuracy)}, {np.mean(seconds):.0f} s); fine-tuning {ft_epochs} epochs at lr "
        f"{args.learning_rate}; seeds {seeds}; test accuracy, mean ± std:"
    )
    print_table(
        ["method"] + [f"{b} labels/class" for b in budgets],
        [[m] + [mean_std(results[m][b]) for b in budgets] for m in METHODS],
    )
    gains = {b: float(np.mean(results["pre-trained + fine-tune"][b]) - np.mean(results["scratch"][b])) for b in budgets}
    print("pre-trained - scratch (points): " + ", ".join(f"{b}/class {100 * g:+.1f}" for b, g in gains.items()))
    return {"results": results, "gains": gains, "masked_accuracy": masked_accuracy}


if __name__ == "__main__":
    main()
