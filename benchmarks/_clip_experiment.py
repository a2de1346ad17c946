"""The CLIP-on-digit-captions experiment of `clip_digits.py`: the towers, the training run,
zero-shot accuracy per prompt template and ensembled, retrieval recall@k and the WiSE-FT curve."""

import time

import keras
import numpy as np

from keras_transfer import datasets
from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.layers import word_tokenizer
from keras_transfer.models import CLIP
from keras_transfer.recipes import build_zero_shot_classifier
from keras_transfer.recipes import retrieval_recall
from keras_transfer.recipes import wise_ft

IMAGE_SIZE = 8
SEQUENCE_LENGTH = 10


def build_digit_clip(
    vocabulary_size, image_size=IMAGE_SIZE, width=64, projection_dim=32, text_dropout=0.0, loss_type="clip"
):
    """A small CNN image tower and a one-block transformer text tower."""
    image_encoder = keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(width // 2, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(width, activation="relu"),
        ],
        name="image_encoder",
    )
    text_encoder = TextTransformerEncoder(
        vocabulary_size,
        SEQUENCE_LENGTH,
        embedding_dim=32,
        num_layers=1,
        num_heads=2,
        dropout=text_dropout,
        name="text_encoder",
    )
    return CLIP(image_encoder, text_encoder, projection_dim=projection_dim, loss_type=loss_type)


def train_digit_clip(
    epochs=25, batch_size=64, learning_rate=1e-3, seed=0, verbose=0, text_dropout=0.1, cosine=False, loss_type="clip"
):
    """Trains CLIP on the digit-caption training split (training templates only).

    Returns `(model, tokenizer, train, test, seconds)` with `train` / `test` the
    `(images, captions, labels)` tuples of `load_digit_captions`.
    """
    keras.utils.set_random_seed(seed)
    train, test = datasets.load_digit_captions(image_size=IMAGE_SIZE, seed=seed)
    x_train, captions, _ = train
    tokenizer = word_tokenizer(list(captions), sequence_length=SEQUENCE_LENGTH)
    model = build_digit_clip(tokenizer.vocabulary_size(), text_dropout=text_dropout, loss_type=loss_type)
    if cosine:
        steps = epochs * -(-len(x_train) // batch_size)
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    start = time.perf_counter()
    model.fit(
        {"images": x_train.astype("float32"), "token_ids": tokenizer(list(captions)).numpy()},
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=verbose,
    )
    return model, tokenizer, train, test, time.perf_counter() - start


def zero_shot_accuracy(model, tokenizer, images, labels, templates, class_style="word"):
    """Held-out accuracy of the zero-shot classifier built from `templates`."""
    classifier = build_zero_shot_classifier(model, datasets.digit_class_names(class_style), templates, tokenizer)
    # One eager call: a fresh `predict` function per classifier would retrace each time.
    probabilities = keras.ops.convert_to_numpy(classifier(images.astype("float32"), training=False))
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def evaluate_digit_clip(model, tokenizer, test):
    """Zero-shot accuracies (each held-out template alone, and their ensemble) and recall@k."""
    x_test, captions, y_test = test
    single = {t: zero_shot_accuracy(model, tokenizer, x_test, y_test, [t]) for t in datasets.HELDOUT_TEMPLATES}
    results = {
        "single_template": single,
        "single_mean": float(np.mean(list(single.values()))),
        "ensemble": zero_shot_accuracy(model, tokenizer, x_test, y_test, datasets.HELDOUT_TEMPLATES),
        "ensemble_numerals": zero_shot_accuracy(
            model, tokenizer, x_test, y_test, datasets.HELDOUT_TEMPLATES, class_style="numeral"
        ),
    }
    results["ensemble_gain"] = results["ensemble"] - results["single_mean"]
    image_embeddings = model.encode_images(x_test.astype("float32"))
    text_embeddings = model.encode_text(tokenizer(list(captions)).numpy())
    # Captions name a class, so a caption matches every image of that class (class-level recall);
    # the strict pairing (only its own image) is reported too.
    results["recall_class"] = retrieval_recall(
        image_embeddings, text_embeddings, image_labels=y_test, text_labels=y_test
    )
    results["recall_pair"] = retrieval_recall(image_embeddings, text_embeddings)
    return results


def wise_ft_curve(
    zero_shot, x, y, x_test, y_test, labels_per_class=5, epochs=20, alphas=(0.0, 0.25, 0.5, 0.75, 1.0), seed=0
):
    """Fine-tunes a copy of a zero-shot classifier on a few labels per class, then returns
    `{alpha: held-out accuracy}` of the WiSE-FT mixtures (alpha 0 = zero-shot, 1 = fine-tuned)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    few = np.concatenate([rng.choice(np.flatnonzero(y == c), labels_per_class, replace=False) for c in classes])
    fine_tuned = keras.models.clone_model(zero_shot)
    fine_tuned.set_weights(zero_shot.get_weights())
    fine_tuned.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    fine_tuned.fit(x[few].astype("float32"), y[few], batch_size=10, epochs=epochs, verbose=0)
    curve = {}
    for alpha in alphas:
        mixed = wise_ft(zero_shot, fine_tuned, alpha=alpha)
        probabilities = keras.ops.convert_to_numpy(mixed(x_test.astype("float32"), training=False))
        curve[alpha] = float(np.mean(probabilities.argmax(axis=1) == y_test))
    return curve
