"""Demo section "text": cloze pre-training on unlabelled sentences, then fine-tuning on a few labels.

The corpus is the Python reference manual that ships with CPython
(`keras_transfer.datasets.load_python_docs`): a small transformer text encoder is
pre-trained by `MaskedLanguageModel` (BERT's fill-in-the-blank task) on the unlabelled
sentences, then a classifier (the encoder, mean-pooled, + a softmax Dense) is fine-tuned on
a few labelled sentences per class (which part of the manual a sentence comes from) and
compared with the same classifier trained from a random init. Written with the public API
as a user would; `benchmarks/text_cloze.py` runs the comparison over seeds and label budgets.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets import TOPIC_GROUPS
from keras_transfer.datasets import load_python_docs
from keras_transfer.datasets import python_docs_tokenizer
from keras_transfer.demos.report import bar_plot
from keras_transfer.demos.report import print_table
from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.models import MaskedLanguageModel


def pretrain(x_pretrain, encoder_args, epochs, seed=0, batch_size=64, learning_rate=2e-3):
    """A token-level `TextTransformerEncoder` after `epochs` of cloze pre-training on `x_pretrain`."""
    keras.utils.set_random_seed(seed)
    encoder = TextTransformerEncoder(**encoder_args, pooling=None)
    model = MaskedLanguageModel(encoder, vocabulary_size=encoder_args["vocabulary_size"], seed=seed)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01))
    # Reshuffled each epoch by the pipeline (seeded); full batches, as benchmarks/text_cloze.py measured.
    data = tf.data.Dataset.from_tensor_slices(x_pretrain).shuffle(len(x_pretrain), seed=seed)
    history = model.fit(data.batch(batch_size, drop_remainder=True), epochs=epochs, verbose=0, shuffle=False)
    return encoder, history.history["masked_accuracy"][-1]


def classifier(token_encoder, num_classes):
    """Token ids -> class probabilities: a mean-pooled copy of `token_encoder` (same weights) + Dense."""
    config = token_encoder.get_config()
    config.update(pooling="mean", name="pooled_encoder")
    pooled = TextTransformerEncoder.from_config(config)
    pooled.build((None, config["sequence_length"]))
    pooled.set_weights(token_encoder.get_weights())
    inputs = keras.Input((config["sequence_length"],), dtype="int32")
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(pooled(inputs))
    return keras.Model(inputs, outputs)


def fine_tune_accuracy(token_encoder, train, test, epochs, seed=0, learning_rate=5e-4):
    """Test accuracy of `classifier(token_encoder)` trained end to end on `train`."""
    (x, y), (x_test, y_test) = train, test
    keras.utils.set_random_seed(seed)
    model = classifier(token_encoder, len(TOPIC_GROUPS))
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=0.01)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return float(model.evaluate(x_test, y_test, batch_size=256, verbose=0)[1])


def run(output_dir, quick=False, seed=0):
    """Pre-trains on the unlabelled sentences and prints fine-tuned vs from-scratch accuracy."""
    os.makedirs(output_dir, exist_ok=True)
    length, max_tokens = (16, 1000) if quick else (24, 1000)  # the vocabulary cap bounds the cloze head's cost
    x_pretrain, (x_train, y_train), (x_test, y_test) = load_python_docs(sequence_length=length, max_tokens=max_tokens)
    encoder_args = {
        "vocabulary_size": python_docs_tokenizer(length, max_tokens).vocabulary_size(),
        "sequence_length": length,
        "embedding_dim": 32 if quick else 64,
        "num_layers": 1 if quick else 2,
        "num_heads": 2,
    }
    if quick:  # seconds: a slice of the data, one pre-training epoch
        x_pretrain, x_test, y_test = x_pretrain[:256], x_test[::5], y_test[::5]
    pretrain_epochs, finetune_epochs, per_class = (1, 2, 5) if quick else (30, 40, 10)
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.where(y_train == c)[0], per_class, replace=False) for c in range(5)])
    train = (x_train[labelled], y_train[labelled])

    start = time.time()
    pretrained, masked_accuracy = pretrain(x_pretrain, encoder_args, pretrain_epochs, seed=seed)
    pretrain_seconds = time.time() - start
    keras.utils.set_random_seed(seed)
    random_init = TextTransformerEncoder(**encoder_args, pooling=None)
    random_init.build((None, length))
    results = {
        "from scratch": fine_tune_accuracy(random_init, train, (x_test, y_test), finetune_epochs, seed),
        "cloze pre-trained": fine_tune_accuracy(pretrained, train, (x_test, y_test), finetune_epochs, seed),
    }
    print(
        f"Cloze pre-training on {len(x_pretrain)} unlabelled sentences of the Python reference manual: "
        f"{pretrain_epochs} epoch(s) in {pretrain_seconds:.0f} s, masked-token accuracy {masked_accuracy:.3f}."
    )
    print(
        f"Fine-tuning on {per_class} labelled sentences per class ({len(TOPIC_GROUPS)} classes: "
        f"{', '.join(TOPIC_GROUPS)}), tested on {len(x_test)} held-out sentences:"
    )
    majority = float(np.bincount(y_test).max() / len(y_test))
    print_table(
        ["encoder", "test accuracy"],
        [[k, f"{v:.3f}"] for k, v in results.items()] + [["majority class", f"{majority:.3f}"]],
    )
    gain = results["cloze pre-trained"] - results["from scratch"]
    print(f"Pre-training gain: {100 * gain:+.1f} points (benchmarks/text_cloze.py: 3 seeds, more label budgets).")
    bar_plot(
        results,
        os.path.join(output_dir, "text_cloze.png"),
        title=f"{per_class} labels per class",
        ylabel="test accuracy",
    )
    return {**results, "gain": gain, "masked_accuracy": float(masked_accuracy), "pretrain_seconds": pretrain_seconds}
