"""Prototypical networks (Snell et al., 2017)."""

import keras
from keras import ops

from keras_transfer.models._meta_batch import check_task_shapes
from keras_transfer.models._meta_batch import unpack_tasks
from keras_transfer.models._serving import ExportsDeclaredInputs
from keras_transfer.models._task_signature import declared_input
from keras_transfer.models._task_signature import task_input_signature
from keras_transfer.models._train_step_model import TrainStepModel
from keras_transfer.utils import validation


@keras.saving.register_keras_serializable(package="keras_transfer")
class ProtoNet(ExportsDeclaredInputs, TrainStepModel):
    """Class prototypes = mean support embeddings; logits = -squared Euclidean distance.

    Inputs are episodes, as produced by `keras_transfer.datasets.sample_episodes`:
    a dict `{"support_x", "support_y", "query_x"}` or tuple with shapes `[E, N*K, ...]`,
    `[E, N*K]` (labels 0..n_way-1) and `[E, Q, ...]`; the output is `[E, Q, n_way]` logits.
    Train with the standard `fit` and
    `compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])`
    on the query labels `[E, Q]`. A plain tensor input returns its embeddings.

    `export()` works straight after `fit` and after `.keras` reload; its signature
    takes episodes with any number of tasks, support and query examples, and
    `support_y` as int64 class ids (what `sample_episodes` and NumPy give).
    A step whose predictions or updated weights are not finite logs NaN for every
    metric, so `keras.callbacks.TerminateOnNaN` stops at that batch.

    Args:
        encoder: a Keras model/layer mapping `[B, ...]` inputs to `[B, D]` embeddings.
        n_way: classes per episode.
        distance: "squared_euclidean" (the paper) or "cosine" (scaled by `temperature`).
        temperature: divides the cosine similarities (ignored for squared Euclidean).
        **kwargs: base `keras.Model` arguments (`name`, ...).

    Call arguments:
        inputs: an episode batch `{"support_x", "support_y", "query_x"}` (or that tuple),
            or a plain batch of the encoder's inputs (returns their embeddings).
        training: whether the encoder runs in training mode.

    Raises:
        ValueError: if `n_way` < 2, `distance` is unknown or `temperature` is not positive.

    Reference:
        Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning",
        NeurIPS 2017.

    Example:

    >>> model = keras_transfer.models.ProtoNet(keras.layers.Identity(), n_way=2)
    >>> episode = {"support_x": np.array([[[0.0], [2.0]]], "float32"),  # one episode, 1-shot
    ...            "support_y": np.array([[0, 1]]),
    ...            "query_x": np.array([[[0.5]]], "float32")}
    >>> keras.ops.convert_to_numpy(model(episode))  # -(0.5 - 0)**2, -(0.5 - 2)**2
    array([[[-0.25, -2.25]]], dtype=float32)
    """

    keras_object_args = ("encoder",)

    def __init__(self, encoder, n_way, distance="squared_euclidean", temperature=0.1, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.n_way = validation.check_int_at_least("n_way", n_way, 2)
        self.distance = validation.check_one_of("distance", distance, ["squared_euclidean", "cosine"])
        self.temperature = validation.check_positive_float("temperature", temperature)

    def _embed(self, x, training):
        shape = ops.shape(x)
        flat = ops.reshape(x, (-1,) + tuple(x.shape[2:]))
        z = ops.cast(self.encoder(flat, training=training), "float32")
        z = ops.reshape(z, (shape[0], shape[1], -1))
        return z

    def prototypes(self, support_z, support_y):
        """The class prototypes: the mean support embedding of each class.

        Args:
            support_z: `[E, S, D]` support embeddings.
            support_y: `[E, S]` class ids in `0..n_way-1`.

        Returns:
            `[E, n_way, D]` prototypes (zeros for a class absent from the support set).
        """
        one_hot = ops.one_hot(ops.cast(support_y, "int32"), self.n_way, dtype=support_z.dtype)  # [E, S, N]
        sums = ops.einsum("esn,esd->end", one_hot, support_z)
        counts = ops.sum(one_hot, axis=1)[..., None]
        return sums / ops.maximum(counts, ops.cast(1.0, counts.dtype))

    def call(self, inputs, training=False):
        if not isinstance(inputs, (dict, tuple, list)):
            return self.encoder(inputs, training=training)
        support_x, support_y, query_x = unpack_tasks(inputs)
        check_task_shapes(support_x, support_y[..., None], query_x)
        support_z = self._embed(support_x, training)
        query_z = self._embed(query_x, training)
        protos = self.prototypes(support_z, support_y)
        if self.distance == "cosine":
            q = query_z / ops.maximum(ops.norm(query_z, axis=-1, keepdims=True), 1e-12)
            p = protos / ops.maximum(ops.norm(protos, axis=-1, keepdims=True), 1e-12)
            return ops.einsum("eqd,end->eqn", q, p) / self.temperature
        # -||q - p||^2 = 2 q.p - |q|^2 - |p|^2
        cross = ops.einsum("eqd,end->eqn", query_z, protos)
        return 2.0 * cross - ops.sum(query_z**2, -1)[..., None] - ops.sum(protos**2, -1)[:, None, :]

    def serving_input_signature(self):
        """The input signature of `export()`.

        Returns:
            `[{"support_x", "support_y", "query_x"}]` specs with any number of episodes
            and examples; `support_y` is int64 class ids.
        """
        shape, dtype = declared_input(self.encoder)
        return task_input_signature(self, dtype, "int64", feature_shape=shape, label_tail=())

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "n_way": self.n_way,
                "distance": self.distance,
                "temperature": self.temperature,
            }
        )
        return config
