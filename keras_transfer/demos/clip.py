"""Demo section "clip": CLIP on digits paired with captions.

Zero-shot accuracy with held-out prompts (one template vs the ensemble) and retrieval
recall@k, written with the public API as a user would; `benchmarks/clip_digits.py` runs
the same training over several seeds, with WiSE-FT and the step cost.
"""

import os
import time

import keras
import numpy as np

from keras_transfer import datasets
from keras_transfer.demos import report
from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.layers import word_tokenizer
from keras_transfer.models import CLIP
from keras_transfer.recipes import build_zero_shot_classifier
from keras_transfer.recipes import retrieval_recall

IMAGE_SIZE = 8
SEQUENCE_LENGTH = 10


def train_clip(train, epochs):
    """CLIP with a small CNN image tower and a one-block transformer text tower, trained on
    the `(images, captions, labels)` of `train`; returns `(model, tokenizer, seconds)`."""
    images, captions, _ = train
    tokenizer = word_tokenizer(list(captions), sequence_length=SEQUENCE_LENGTH)
    image_encoder = keras.Sequential(
        [  # [0, 255] pixels -> 64 features
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(64, activation="relu"),
        ],
        name="image_encoder",
    )
    text_encoder = TextTransformerEncoder(
        tokenizer.vocabulary_size(),
        SEQUENCE_LENGTH,
        embedding_dim=32,
        num_layers=1,
        num_heads=2,
        dropout=0.1,
        name="text_encoder",
    )
    model = CLIP(image_encoder, text_encoder, projection_dim=32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = time.perf_counter()
    model.fit(
        {"images": images.astype("float32"), "token_ids": tokenizer(list(captions)).numpy()},
        batch_size=64,
        epochs=epochs,
        shuffle=True,
        verbose=0,
    )
    return model, tokenizer, time.perf_counter() - start


def zero_shot_accuracies(model, tokenizer, images, labels):
    """{prompt: held-out accuracy} of zero-shot classifiers built from the held-out templates."""
    words, numerals = datasets.digit_class_names("word"), datasets.digit_class_names("numeral")
    templates = datasets.HELDOUT_TEMPLATES
    classifiers = {f'"{t}"': build_zero_shot_classifier(model, words, [t], tokenizer) for t in templates}
    classifiers["ensemble"] = build_zero_shot_classifier(model, words, templates, tokenizer)
    classifiers["ensemble, classes as numerals"] = build_zero_shot_classifier(model, numerals, templates, tokenizer)
    images = images.astype("float32")
    # One eager call each: a fresh `predict` function per classifier would retrace each time.
    return {
        prompt: float(np.mean(keras.ops.convert_to_numpy(classifier(images, training=False)).argmax(1) == labels))
        for prompt, classifier in classifiers.items()
    }


def run(output_dir, quick=False, seed=0):
    """Trains CLIP on digit captions and prints zero-shot and retrieval results."""
    os.makedirs(output_dir, exist_ok=True)
    epochs = 12 if quick else 25
    keras.utils.set_random_seed(seed)
    train, (x_test, test_captions, y_test) = datasets.load_digit_captions(image_size=IMAGE_SIZE, seed=seed)
    model, tokenizer, seconds = train_clip(train, epochs)
    print(
        f"CLIP on {len(train[0])} digit images with template captions "
        f"({len(datasets.TRAIN_TEMPLATES)} training templates), {epochs} epochs in {seconds:.0f} s; "
        f"learned logit scale {model.get_logit_scale():.1f}."
    )
    accuracy = zero_shot_accuracies(model, tokenizer, x_test, y_test)
    single = [accuracy[f'"{t}"'] for t in datasets.HELDOUT_TEMPLATES]
    single_mean = float(np.mean(single))
    print(f"\nZero-shot accuracy on {len(x_test)} held-out images, prompts from held-out templates:")
    rows = [[f'"{t}"', f"{a:.3f}"] for t, a in zip(datasets.HELDOUT_TEMPLATES, single)]
    rows.append(["mean of single templates", f"{single_mean:.3f}"])
    rows.append([f"ensemble of {len(datasets.HELDOUT_TEMPLATES)} templates", f"{accuracy['ensemble']:.3f}"])
    rows.append(["ensemble, classes as numerals", f"{accuracy['ensemble, classes as numerals']:.3f}"])
    report.print_table(["prompt", "accuracy"], rows)
    print(f"Ensembling gain over the mean single template: {100 * (accuracy['ensemble'] - single_mean):+.1f} points")

    image_embeddings = model.encode_images(x_test.astype("float32"))
    text_embeddings = model.encode_text(tokenizer(list(test_captions)).numpy())
    # Captions name a class, so a caption matches every image of that class (class-level recall);
    # the strict pairing (only its own image) is reported too.
    recall = {
        "same class": retrieval_recall(image_embeddings, text_embeddings, image_labels=y_test, text_labels=y_test),
        "own pair only": retrieval_recall(image_embeddings, text_embeddings),
    }
    print("\nRetrieval on the held-out images and captions (recall@k):")
    report.print_table(
        ["match", "image->text @1", "@5", "@10", "text->image @1", "@5", "@10"],
        [
            [name] + [f"{r[f'{d}_recall@{k}']:.3f}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)]
            for name, r in recall.items()
        ],
    )
    bars = {f"T{i + 1}": a for i, a in enumerate(single)}
    bars["ensemble"] = accuracy["ensemble"]
    report.bar_plot(
        bars,
        os.path.join(output_dir, "clip_zero_shot.png"),
        title="CLIP zero-shot accuracy on held-out digits: single templates vs ensemble",
        ylabel="accuracy",
    )
    return {
        "zero_shot_single_mean": single_mean,
        "zero_shot_ensemble": accuracy["ensemble"],
        "ensemble_gain": accuracy["ensemble"] - single_mean,
        "image_to_text_recall@1": recall["same class"]["image_to_text_recall@1"],
        "text_to_image_recall@1": recall["same class"]["text_to_image_recall@1"],
        "train_seconds": seconds,
    }
