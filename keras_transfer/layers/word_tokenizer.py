"""An offline word tokenizer for the CLIP text tower, built on `keras.layers.TextVectorization`.

Lower-cases, strips punctuation, splits on whitespace and maps words to ids
from a local vocabulary (0 = padding, 1 = out-of-vocabulary), padding or
truncating to `sequence_length`. Nothing is downloaded. Keras's own
`TextVectorization` does the work; this function only fixes CLIP-friendly
settings and checks the arguments.
"""

import keras

from keras_transfer.utils import validation


def word_tokenizer(texts=None, vocabulary=None, sequence_length=16, max_tokens=None):
    """A `TextVectorization` layer: strings -> int token ids `(batch, sequence_length)`.

    Lower-cases, strips punctuation, splits on whitespace and maps words to ids
    (0 = padding, 1 = out-of-vocabulary), padding or truncating every text to
    `sequence_length` ids. Nothing is downloaded.

    Args:
        texts: an iterable of strings to learn the vocabulary from (`adapt`), or None.
        vocabulary: an explicit list of words (or a path to a one-word-per-line
            file) instead of `texts`.
        sequence_length: number of ids per text (padded with 0 / truncated).
        max_tokens: cap on the vocabulary size (including padding and OOV), or None.

    Returns:
        An adapted `keras.layers.TextVectorization`; `tokenizer.vocabulary_size()`
        is the `vocabulary_size` for `TextTransformerEncoder`. It saves inside
        `.keras` files and works inside `tf.data` pipelines.

    Raises:
        ValueError: if not exactly one of `texts` and `vocabulary` is given,
            `texts` is empty or a single string, `sequence_length` is not positive
            or `max_tokens` is below 3.

    Example:

    >>> tokenizer = keras_transfer.layers.word_tokenizer(
    ...     vocabulary=["a", "photo", "of", "cat", "dog"], sequence_length=6)
    >>> tokenizer(["A photo of a cat!", "a bird"]).numpy()
    array([[2, 3, 4, 2, 5, 0],
           [2, 1, 0, 0, 0, 0]])
    >>> tokenizer.vocabulary_size()
    7
    """
    if (texts is None) == (vocabulary is None):
        raise ValueError(
            "Exactly one of `texts` and `vocabulary` must be given. Received: "
            f"texts={'None' if texts is None else '...'}, vocabulary="
            f"{'None' if vocabulary is None else '...'}. Pass captions to learn the "
            "vocabulary from, or a word list."
        )
    sequence_length = validation.check_positive_int("sequence_length", sequence_length)
    if max_tokens is not None:
        max_tokens = validation.check_int_at_least("max_tokens", max_tokens, 3)
    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize="lower_and_strip_punctuation",
        split="whitespace",
        output_mode="int",
        output_sequence_length=sequence_length,
        vocabulary=vocabulary,
    )
    if isinstance(texts, (str, bytes)):
        raise ValueError(
            f"`texts` must be a list of strings, not one string. Received: texts={texts[:40]!r}. Wrap it: texts=[text]."
        )
    if texts is not None:
        texts = [str(t) for t in texts]
        if not texts:
            raise ValueError("`texts` must contain at least one string. Received: an empty texts list.")
        layer.adapt(texts)
    return layer
