"""Digits paired with captions: the embedded default for CLIP.

Each of scikit-learn's 1,797 digits gets a caption written from a prompt
template and its class, the class written as a word ("seven") or a numeral
("7") at random: "a photo of the number seven", "handwritten 7", ... The
training split uses `TRAIN_TEMPLATES`; the test split uses `HELDOUT_TEMPLATES`,
which never occur in training (new phrasings, some words outside the training
vocabulary), so zero-shot accuracy with held-out prompts measures transfer to
new text, not memorised captions. The image split is `load_digits`'s.
"""

import numpy as np

from keras_transfer.datasets.digits import load_digits
from keras_transfer.utils import validation

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_NUMERALS = tuple(str(i) for i in range(10))

TRAIN_TEMPLATES = (
    "a photo of the number {}",
    "handwritten {}",
    "a drawing of a {}",
    "the digit {}",
    "a scan of a handwritten {}",
    "a picture of the number {}",
    "a small grey image of a {}",
    "{}",
)

HELDOUT_TEMPLATES = (
    "an image of the digit {}",
    "a photo of a handwritten {}",
    "a blurry picture of a {}",
    "this is the number {}",
    "a {} written by hand",
    "a low resolution scan of the digit {}",
)


def digit_class_names(style="word"):
    """The ten digit class names, as words or numerals.

    Args:
        style: "word" ("zero", "one", ...) or "numeral" ("0", "1", ...).

    Returns:
        A list of ten strings.

    Raises:
        ValueError: if `style` is unknown.

    Example:

    >>> keras_transfer.datasets.digit_class_names()[:3]
    ['zero', 'one', 'two']
    >>> keras_transfer.datasets.digit_class_names("numeral")[:3]
    ['0', '1', '2']
    """
    validation.check_one_of("style", style, ("word", "numeral"))
    return list(DIGIT_WORDS if style == "word" else DIGIT_NUMERALS)


def make_captions(labels, templates, seed=0, numeral_fraction=0.5):
    """One caption per label: a random template filled with the class name.

    Args:
        labels: digit classes in [0, 9].
        templates: strings with exactly one "{}", where the class name goes.
        seed: seed of the template and word/numeral draws.
        numeral_fraction: probability of writing the class as a numeral ("7")
            rather than a word ("seven").

    Returns:
        A NumPy array of str, one caption per label.

    Raises:
        ValueError: if a label is outside [0, 9], a template lacks its single
            "{}", or `numeral_fraction` is outside [0, 1].
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(
            f"`labels` must be digit classes in [0, 9]. Received: values in [{labels.min()}, {labels.max()}]"
        )
    templates = list(templates)
    if not templates or any(not isinstance(t, str) or t.count("{}") != 1 for t in templates):
        raise ValueError(
            "`templates` must be a non-empty list of strings with exactly one '{}'. "
            f"Received: templates={templates!r}"
        )
    validation.check_fraction("numeral_fraction", numeral_fraction, inclusive_high=True)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(templates), size=len(labels))
    numeral = rng.uniform(size=len(labels)) < numeral_fraction
    captions = [
        templates[t].format(DIGIT_NUMERALS[y] if n else DIGIT_WORDS[y])
        for y, t, n in zip(labels.tolist(), which.tolist(), numeral.tolist())
    ]
    return np.array(captions, dtype=object)


def load_digit_captions(image_size=8, channels=1, test_fraction=0.25, seed=0, numeral_fraction=0.5):
    """scikit-learn's digits with a caption per image, the embedded data of CLIP.

    Images and labels are `load_digits(image_size, channels, test_fraction, seed)`;
    training captions come from `TRAIN_TEMPLATES`, test captions from
    `HELDOUT_TEMPLATES`, which never occur in training, so zero-shot accuracy with
    the test captions measures transfer to new phrasings.

    Args:
        image_size: int or (height, width) of the images.
        channels: 1 (grayscale) or 3 (RGB).
        test_fraction: share of each class held out for testing.
        seed: seed of the split and of the captions.
        numeral_fraction: probability of writing a class as a numeral ("7")
            rather than a word ("seven"), in [0, 1].

    Returns:
        `((x_train, captions_train, y_train), (x_test, captions_test, y_test))`:
        uint8 images NHWC, NumPy arrays of str, int64 labels 0..9.

    Raises:
        ValueError: if an argument is out of range (see `load_digits`).

    Example:

    >>> (x, captions, y), _ = keras_transfer.datasets.load_digit_captions()
    >>> x.shape, captions.shape, y.shape
    ((1347, 8, 8, 1), (1347,), (1347,))
    >>> str(captions[0]), int(y[0])
    ('...', 0)
    """
    (x_train, y_train), (x_test, y_test) = load_digits(
        image_size=image_size, channels=channels, test_fraction=test_fraction, seed=seed
    )
    train_captions = make_captions(y_train, TRAIN_TEMPLATES, seed=seed, numeral_fraction=numeral_fraction)
    test_captions = make_captions(y_test, HELDOUT_TEMPLATES, seed=seed + 1, numeral_fraction=numeral_fraction)
    return (x_train, train_captions, y_train), (x_test, test_captions, y_test)
