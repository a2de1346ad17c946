"""Image <-> text retrieval recall@k for a paired evaluation set (as in CLIP, §3.1.6).

Query i retrieves the k candidates with the largest cosine similarity; it is a
hit when its own pair is among them, or, with labels, when any retrieved item
shares its label. Keras's `TopKCategoricalAccuracy` needs a class per column,
not a pairing, so this is written here (NumPy; an evaluation, not a training op).
"""

import numpy as np

from keras_transfer.utils import validation


def _normalise(x, name):
    x = validation.check_finite(np.asarray(x, dtype="float64"), name)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 2-D array (n, dim). Received: shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _recall(similarity, query_labels, candidate_labels, ks):
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = candidate_labels[order] == query_labels[:, None]
    return {k: float(np.mean(hits[:, :k].any(axis=1))) for k in ks}


def retrieval_recall(image_embeddings, text_embeddings, ks=(1, 5, 10), image_labels=None, text_labels=None):
    """Image -> text and text -> image retrieval recall@k of paired embeddings.

    Every query retrieves the k candidates of the other modality with the largest
    cosine similarity (ties broken by index); recall@k is the share of queries with
    a correct candidate among them. Computed in float64 with NumPy.

    Args:
        image_embeddings: `(n_images, dim)` image embeddings.
        text_embeddings: `(n_texts, dim)` text embeddings; without labels, row i pairs
            with image i.
        ks: the k values (each >= 1), or one int.
        image_labels: optional `(n_images,)` ids; a retrieved item is correct when its
            id equals the query's (e.g. a class, or the index of each image).
        text_labels: optional `(n_texts,)` ids (e.g. the index of the image each caption
            describes); given together with `image_labels`.

    Returns:
        A dict `{"image_to_text_recall@k": float, "text_to_image_recall@k": float}` for
        every k.

    Raises:
        ValueError: if an embedding array is not a non-empty finite 2-D array, the sizes
            differ, a k is not a positive integer, only one of the labels is given, or
            the rows are not paired (or not labelled one id per row).

    Reference:
        Radford et al., "Learning Transferable Visual Models From Natural Language
        Supervision", ICML 2021 (the retrieval evaluation).

    Example:

    >>> images = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> texts = np.array([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.0]])
    >>> recall = keras_transfer.recipes.retrieval_recall(images, texts, ks=(1, 2))
    >>> for name, value in recall.items():
    ...     print(name, round(value, 2))
    image_to_text_recall@1 0.67
    text_to_image_recall@1 0.67
    image_to_text_recall@2 0.67
    text_to_image_recall@2 1.0
    """
    image = _normalise(image_embeddings, "image_embeddings")
    text = _normalise(text_embeddings, "text_embeddings")
    if image.shape[1] != text.shape[1]:
        raise ValueError(
            "`image_embeddings` and `text_embeddings` must have the same size. "
            f"Received: {image.shape[1]} and {text.shape[1]}"
        )
    ks = [validation.check_positive_int("ks", k) for k in (ks if hasattr(ks, "__iter__") else [ks])]
    if not ks:
        raise ValueError("`ks` must hold at least one k. Received: ks=[]")
    if (image_labels is None) != (text_labels is None):
        raise ValueError("`image_labels` and `text_labels` must be given together. Received: only one.")
    if image_labels is None:
        if image.shape[0] != text.shape[0]:
            raise ValueError(
                "Without labels, `image_embeddings` and `text_embeddings` must be paired row by "
                f"row. Received: {image.shape[0]} images and {text.shape[0]} texts. Pass "
                "`image_labels` / `text_labels` for several captions per image."
            )
        image_labels = text_labels = np.arange(image.shape[0])
    image_labels, text_labels = np.asarray(image_labels), np.asarray(text_labels)
    if image_labels.shape != (image.shape[0],) or text_labels.shape != (text.shape[0],):
        raise ValueError(
            "`image_labels` / `text_labels` must hold one id per row. Received: shapes "
            f"{image_labels.shape} and {text_labels.shape} for {image.shape[0]} images and "
            f"{text.shape[0]} texts."
        )
    similarity = image @ text.T
    i2t = _recall(similarity, image_labels, text_labels, ks)
    t2i = _recall(similarity.T, text_labels, image_labels, ks)
    result = {}
    for k in ks:
        result[f"image_to_text_recall@{k}"] = i2t[k]
        result[f"text_to_image_recall@{k}"] = t2i[k]
    return result
