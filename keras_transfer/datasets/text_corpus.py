"""An offline English text corpus: the Python reference manual that ships with CPython.

`pydoc_data.topics` (standard library, used by `help()`) holds 79 topics of the
Python documentation as plain text (about 465,000 characters on CPython 3.11).
`split_sentences` turns a topic into prose sentences; `load_python_docs` gives
the unlabelled pre-training sentences and a labelled task derived without hand
labelling: the group (`TOPIC_GROUPS`) of the topic a sentence comes from.
Nothing is downloaded. Exact sizes depend on the Python version's documentation;
the figures quoted below are for CPython 3.11.
"""

import functools
import re

import numpy as np

from keras_transfer.utils import validation

# Five groups of the reference manual's topics (pydoc names), by the chapter they come from.
# "debugger" (pdb) belongs to none: its sentences are pre-training text only.
TOPIC_GROUPS = {
    "statements": (
        "assert", "assignment", "async", "augassign", "break", "class", "compound", "continue", "del",
        "else", "for", "function", "global", "if", "import", "nonlocal", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ),
    "expressions": (
        "atom-identifiers", "atom-literals", "attribute-references", "await", "binary", "bitwise",
        "booleans", "calls", "comparisons", "conversions", "dict", "exprlists", "in", "lambda", "lists",
        "operator-summary", "power", "shifting", "slicings", "subscriptions", "unary",
    ),
    "lexical and execution model": (
        "dynamic-features", "exceptions", "execmodel", "floating", "id-classes", "identifiers",
        "imaginary", "integers", "naming", "numbers", "strings",
    ),
    "data model": (
        "attribute-access", "callable-types", "context-managers", "customization", "numeric-types",
        "objects", "sequence-types", "specialnames", "types",
    ),
    "built-in types": (
        "bltin-code-objects", "bltin-ellipsis-object", "bltin-null-object", "bltin-type-objects",
        "formatstrings", "specialattrs", "string-methods", "truth", "typesfunctions", "typesmapping",
        "typesmethods", "typesmodules", "typesseq", "typesseq-mutable",
    ),
}  # fmt: skip

# Words ending in "." that do not end a sentence.
_ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "resp.", "no.", "sec.", "fig."}
_UNDERLINE = re.compile(r"^\s*([*=\-^~#\"])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“‘(])")
_BULLET = re.compile(r"^(\*|-|\d+\.|\(\d+\)|\[\d+\])\s+|^\*\*")


def _is_prose(lines):
    """Whether a paragraph (its non-blank lines) is prose rather than code, grammar or a table."""
    first = _BULLET.sub("", lines[0].strip())
    if not first or not (first[0].isupper() or first[0] in '"“‘'):
        return False  # code ("def f():"), signatures ("str.count(sub)"), grammar ("if_stmt ::=")
    text = " ".join(lines)
    table = any(line.strip().startswith(("+-", "+=", "|")) for line in lines)
    return not table and "::=" not in text and ">>>" not in text


def split_sentences(text, min_words=5, max_words=60):
    """Splits plain-text documentation into prose sentences, deterministically.

    Paragraphs are blocks between blank lines. Headings (a line over an
    underline of `*`, `=`, `-`, ...) are removed; a paragraph is kept only when
    it is prose: it starts with a capital letter or a quote (after a `*`, `-`
    or `1.` bullet) and holds no grammar (`::=`), interactive session (`>>>`)
    or table (`+--`, `|`), which drops code blocks and signatures such as
    `str.count(sub[, start])`. Its lines are joined and split after `.`, `!`
    or `?` followed by white space and a capital letter, a quote or `(`
    (except after `e.g.`, `i.e.`, `etc.`, ...). Sentences with fewer than
    `min_words` or more than `max_words` words, or in which under 60 % of the
    non-space characters are letters, are dropped.

    Args:
        text: a document as plain text (e.g. one `pydoc_data.topics` entry).
        min_words: shortest sentence kept, in words (at least 1).
        max_words: longest sentence kept, in words (at least `min_words`).

    Returns:
        A list of sentences (str), in document order, white space collapsed.

    Raises:
        ValueError: if `text` is not a string or the word bounds are invalid.

    Example:

    >>> text = "Title\\n*****\\n\\nThe loop runs. It stops, e.g. on a break.\\n\\n   x = f(y)\\n"
    >>> keras_transfer.datasets.split_sentences(text, min_words=2)
    ['The loop runs.', 'It stops, e.g. on a break.']
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string. Received: text of type {type(text).__name__}")
    min_words = validation.check_positive_int("min_words", min_words)
    max_words = validation.check_int_at_least("max_words", max_words, min_words)
    lines = text.splitlines()
    # Blank out headings: the underline and the title line above it.
    for i, line in enumerate(lines):
        if _UNDERLINE.match(line) and line.strip():
            lines[i] = ""
            if i > 0:
                lines[i - 1] = ""
    sentences, paragraph = [], []
    for line in lines + [""]:
        if line.strip():
            paragraph.append(line)
            continue
        if paragraph and _is_prose(paragraph):
            joined = " ".join(_BULLET.sub("", paragraph[0].strip()).split() + " ".join(paragraph[1:]).split())
            sentences.extend(_split_paragraph(joined, min_words, max_words))
        paragraph = []
    return sentences


def _split_paragraph(paragraph, min_words, max_words):
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        words = paragraph[start : match.start()].split()
        if words and words[-1].lower() in _ABBREVIATIONS:
            continue
        pieces.append(paragraph[start : match.start()])
        start = match.end()
    pieces.append(paragraph[start:])
    kept = []
    for sentence in pieces:
        sentence = sentence.strip()
        characters = sentence.replace(" ", "")
        letters = sum(c.isalpha() for c in characters)
        if min_words <= len(sentence.split()) <= max_words and letters >= 0.6 * max(len(characters), 1):
            kept.append(sentence)
    return kept


@functools.lru_cache(maxsize=4)
def _split_corpus(test_fraction):
    """(pretrain, train, train_labels, test, test_labels) as tuples; see `load_python_docs`."""
    from pydoc_data.topics import topics  # the standard library's copy of the reference manual

    group_of = {topic: g for g, names in enumerate(TOPIC_GROUPS.values()) for topic in names}
    seen, pretrain, train, train_labels, test, test_labels = set(), [], [], [], [], []
    # Shortest topics first, so aggregates ("compound", "specialnames") keep only what their parts lack.
    for topic in sorted(topics, key=lambda name: (len(topics[name]), name)):
        sentences = []
        for sentence in split_sentences(topics[topic]):
            key = sentence.lower()
            if key not in seen:
                seen.add(key)
                sentences.append(sentence)
        group = group_of.get(topic)
        n_test = 0 if group is None else int(round(test_fraction * len(sentences)))
        cut = len(sentences) - n_test
        pretrain.extend(sentences[:cut])
        if group is not None:
            train.extend(sentences[:cut])
            train_labels.extend([group] * cut)
            test.extend(sentences[cut:])
            test_labels.extend([group] * n_test)
    return tuple(pretrain), tuple(train), tuple(train_labels), tuple(test), tuple(test_labels)


def python_docs_tokenizer(sequence_length=32, max_tokens=None, test_fraction=0.25):
    """The word tokenizer of `load_python_docs`, adapted on the pre-training sentences only.

    Args:
        sequence_length: ids per sentence (padded with 0 / truncated).
        max_tokens: vocabulary cap, padding (0) and out-of-vocabulary (1) included;
            None keeps every word.
        test_fraction: as in `load_python_docs` (the test sentences never shape the vocabulary).

    Returns:
        A `keras_transfer.layers.word_tokenizer` (`keras.layers.TextVectorization`);
        `tokenizer.vocabulary_size()` is the encoder's `vocabulary_size`.

    Raises:
        ValueError: if an argument is out of range.

    Example:

    >>> tokenizer = keras_transfer.datasets.python_docs_tokenizer(sequence_length=8)
    >>> tokenizer.vocabulary_size() > 2000  # 2,932 on CPython 3.11; each release's manual differs
    True
    >>> tokenizer(["The for statement is used to iterate."]).numpy().shape
    (1, 8)
    """
    from keras_transfer.layers.word_tokenizer import word_tokenizer

    pretrain = _split_corpus(_check_test_fraction(test_fraction))[0]
    return word_tokenizer(pretrain, sequence_length=sequence_length, max_tokens=max_tokens)


def _check_test_fraction(test_fraction):
    return float(validation.check_fraction("test_fraction", test_fraction, inclusive_low=False))


def load_python_docs(sequence_length=32, max_tokens=None, test_fraction=0.25, as_text=False):
    """Sentences of the Python reference manual: unlabelled pre-training text and a 5-class task.

    The corpus is CPython's own `pydoc_data.topics` (nothing is downloaded), cut
    into prose sentences by `split_sentences`, duplicates removed (topics are read
    shortest first, so an aggregate topic such as "compound" keeps only the
    sentences its parts, "if", "for", ..., lack). A sentence's label is the index of its
    topic's group in `TOPIC_GROUPS` (0 statements, 1 expressions, 2 lexical and
    execution model, 3 data model, 4 built-in types). Within every topic the last
    `test_fraction` of its sentences (document order) form the test split, so a
    test sentence is never a training or pre-training sentence. The pre-training
    sentences are every non-test sentence: the labelled training sentences plus
    the "debugger" topic, which belongs to no group.

    With CPython 3.11 and the default `test_fraction=0.25`: 1,842 pre-training
    sentences, 1,665 labelled training sentences (per class 416, 232, 124, 507,
    386) and 554 test sentences (139, 77, 43, 168, 127); the pre-training text
    has 2,930 distinct words (a 2,932-id vocabulary with padding and
    out-of-vocabulary), and about 5 % of the test words are out of it. Sentences
    have 5 to 60 words (median 15, 95th percentile 35).

    Args:
        sequence_length: token ids per sentence (padded with 0 / truncated).
        max_tokens: vocabulary cap (padding and out-of-vocabulary included), or None.
        test_fraction: share of each topic's sentences held out, in (0, 1).
        as_text: return the sentences as str arrays instead of token ids.

    Returns:
        `(x_pretrain, (x_train, y_train), (x_test, y_test))`: int64 token ids
        `(n, sequence_length)` from `python_docs_tokenizer(sequence_length,
        max_tokens, test_fraction)` (0 = padding, 1 = out of vocabulary) or, with
        `as_text=True`, object arrays of str; int64 labels in [0, 5).

    Raises:
        ValueError: if an argument is out of range.

    Example:

    >>> x_pretrain, (x_train, y_train), (x_test, y_test) = keras_transfer.datasets.load_python_docs(
    ...     sequence_length=16)
    >>> len(x_pretrain) > 1500, x_train.shape[1], len(np.bincount(y_test))  # 1,842 sentences on CPython 3.11
    (True, 16, 5)
    >>> _, (text, _), _ = keras_transfer.datasets.load_python_docs(as_text=True)
    >>> str(text[0])
    'Suspend the execution of *coroutine* on an *awaitable* object.'
    """
    test_fraction = _check_test_fraction(test_fraction)
    sequence_length = validation.check_positive_int("sequence_length", sequence_length)
    pretrain, train, train_labels, test, test_labels = _split_corpus(test_fraction)
    texts = [np.array(list(part), dtype=object) for part in (pretrain, train, test)]
    if not as_text:
        tokenizer = python_docs_tokenizer(sequence_length, max_tokens, test_fraction)
        texts = [np.asarray(tokenizer(list(part)), dtype="int64") for part in texts]
    y_train, y_test = np.array(train_labels, dtype="int64"), np.array(test_labels, dtype="int64")
    return texts[0], (texts[1], y_train), (texts[2], y_test)
