"""Gradient caching: a contrastive step over a large batch with the memory of one chunk (Gao et al. 2021)."""

import tensorflow as tf

from keras_transfer.utils import validation


def _chunk_starts(inputs, chunk_size):
    return tf.range(0, tf.shape(tf.nest.flatten(inputs)[0])[0], chunk_size)


def _rows(inputs, start, size):
    """Rows `start : start + size` of every tensor of the nest `inputs`."""
    return tf.nest.map_structure(lambda t: t[start : start + size], inputs)


def _dense(grads, variables):
    """Gradients as dense tensors, zeros where a variable is unconnected (Keras variables' dtypes are strings,
    which `tf.UnconnectedGradients.ZERO` cannot read)."""
    return [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]


def _embed_in_chunks(embed_fn, inputs, chunk_size):
    """`embed_fn` over `inputs` in chunks of `chunk_size` rows, no graph kept: `(batch, dim)` embeddings."""
    starts = _chunk_starts(inputs, chunk_size)
    first = tf.stop_gradient(embed_fn(_rows(inputs, 0, chunk_size)))
    pieces = tf.TensorArray(first.dtype, size=tf.size(starts), infer_shape=False)
    pieces = pieces.write(0, first)

    def body(i, pieces):
        start = starts[i]
        return i + 1, pieces.write(i, tf.stop_gradient(embed_fn(_rows(inputs, start, chunk_size))))

    _, pieces = tf.while_loop(lambda i, _: i < tf.size(starts), body, (tf.constant(1), pieces))
    embeddings = pieces.concat()
    return tf.ensure_shape(embeddings, [None] + first.shape[1:].as_list())


def _backward_in_chunks(embed_fn, inputs, embedding_grads, chunk_size, variables):
    """Sum over chunks of d<embed_fn(chunk), embedding_grads[chunk]>/d variables (the chunked backward pass)."""
    starts = _chunk_starts(inputs, chunk_size)

    def chunk_grads(start):
        with tf.GradientTape() as tape:
            chunk = embed_fn(_rows(inputs, start, chunk_size))
            surrogate = tf.reduce_sum(chunk * tf.cast(embedding_grads[start : start + chunk_size], chunk.dtype))
        return _dense(tape.gradient(surrogate, variables), variables)

    def body(i, totals):
        grads = chunk_grads(starts[i])
        return i + 1, [t + tf.cast(g, t.dtype) for t, g in zip(totals, grads)]

    first = chunk_grads(starts[0])
    _, totals = tf.while_loop(lambda i, _: i < tf.size(starts), body, (tf.constant(1), first))
    return totals


def gradient_cache(embed_fn, loss_fn, inputs, chunk_size, variables, state_variables=()):
    """The loss of a batch and its gradients, computing embeddings `chunk_size` rows at a time.

    A contrastive loss couples every example of the batch (each anchor's negatives are
    the others), so its batch size is bounded by the memory of the encoder's
    activations. Gradient caching (Gao et al. 2021) splits the step in three:

    1. embed every chunk without keeping its graph: `z = embed_fn(inputs)`;
    2. the loss and its gradient with respect to the embeddings, `dL/dz`, on the whole
       batch (cheap: only the embeddings are in memory);
    3. for every chunk again, re-embed it with a tape and back-propagate
       `<embed_fn(chunk), dL/dz[chunk]>`; the chunks' parameter gradients add up to
       `dL/dθ` (the chain rule, as `L` depends on `θ` through `z`).

    Peak activation memory is one chunk's; the price is a second forward pass. The
    result equals the unchunked step whenever `embed_fn` treats the rows of a batch
    independently (no BatchNorm in training mode: its batch statistics become chunk
    statistics). `state_variables` (a model's `non_trainable_variables`: BatchNorm
    moving statistics, dropout seed states) are restored between passes 1 and 3, so
    the second pass draws the same dropout masks as the first and the state updates
    are applied once. Gradients of `loss_fn` with respect to `variables` it reads
    directly (a learned temperature, weight regularisation) are added. Runs inside a
    `tf.function` (a `train_step`) and eagerly; TensorFlow only.

    Args:
        embed_fn: a function `rows -> (rows, dim)` embeddings (the encoder and
            projection head, with `training=True`).
        loss_fn: a function `(batch, dim) embeddings -> (loss, aux)`: a scalar to
            differentiate and anything else to return (e.g. metrics).
        inputs: a tensor `(batch, ...)` to embed (for SimCLR, both views stacked),
            or a tuple of tensors with the same batch size (for CLIP, images and
            token ids; `embed_fn` then returns both embeddings side by side).
        chunk_size: rows per chunk (positive int); the last chunk may be smaller.
        variables: the variables to differentiate.
        state_variables: variables that the forward pass updates and that must be
            restored before the second pass.

    Returns:
        `(loss, aux, grads)`, `grads` a list aligned with `variables` (zeros where
        the loss does not depend on a variable).

    Raises:
        ValueError: if `chunk_size` is not a positive int.

    Reference:
        Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under
        Memory Limited Setup", RepL4NLP 2021.

    Example:

    >>> import tensorflow as tf
    >>> dense = keras.layers.Dense(3)
    >>> x = np.arange(12, dtype="float32").reshape(6, 2) / 10
    >>> loss_fn = lambda z: (tf.reduce_sum(tf.matmul(z, z, transpose_b=True) ** 2), None)
    >>> loss, _, grads = keras_transfer.ops.gradient_cache(dense, loss_fn, x, 4, dense.trainable_variables)
    >>> with tf.GradientTape() as tape:
    ...     whole, _ = loss_fn(dense(x))
    >>> reference = tape.gradient(whole, dense.trainable_variables)
    >>> bool(np.allclose(loss, whole)), all(np.allclose(g, r, rtol=1e-5) for g, r in zip(grads, reference))
    (True, True)
    """
    chunk_size = validation.check_positive_int("chunk_size", chunk_size)
    inputs = tf.nest.map_structure(tf.convert_to_tensor, inputs)
    variables = list(variables)
    state_variables = list(state_variables)
    saved = [tf.identity(v) for v in state_variables]
    embeddings = _embed_in_chunks(embed_fn, inputs, chunk_size)
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        loss, aux = loss_fn(embeddings)
    grads = tape.gradient(loss, [embeddings] + variables)
    embedding_grads, direct = grads[0], _dense(grads[1:], variables)
    # Program order is execution order for stateful ops in a tf.function: the restore
    # runs after the first pass's updates and before the second pass reads the state.
    for variable, value in zip(state_variables, saved):
        variable.assign(value)
    chunked = _backward_in_chunks(embed_fn, inputs, embedding_grads, chunk_size, variables)
    return loss, aux, [d + tf.cast(c, d.dtype) for d, c in zip(direct, chunked)]
