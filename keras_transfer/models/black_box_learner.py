"""Black-box meta-learner: a set encoder reads the support set into a task context h_i."""

import keras
from keras import ops

from keras_transfer.models.meta_model import _check_task_shapes
from keras_transfer.models.meta_model import unpack_tasks
from keras_transfer.utils import validation


def _mlp(units, depth, out, name):
    layers = [keras.layers.Dense(units, activation="relu") for _ in range(depth)]
    return keras.Sequential(layers + [keras.layers.Dense(out)], name=name)


@keras.saving.register_keras_serializable(package="keras_transfer")
class BlackBoxLearner(keras.Model):
    """phi_i = {h_i, theta_g}: the support set is summarised into a context `h_i`.

    Each support pair `(f(x), label)` goes through a pair encoder; the mean over the
    support set (a permutation-invariant set encoder, as in neural processes) is the task
    context `h_i` (`context_dim` numbers). The predictor reads `[f(x_query), h_i]`.
    Inputs and shapes as for `MetaModel`/`ProtoNet` (a dict or tuple of support_x,
    support_y, query_x, batch axis = tasks); the output is `[T, Q, num_outputs]` and `fit`
    is the standard one with the user's loss.

    Args:
        num_outputs: outputs per query example (classes for classification).
        num_classes: if set, support labels are integer classes fed one-hot (classification);
            None feeds the raw targets (regression).
        feature_encoder: optional model mapping `[B, ...]` inputs to `[B, D]` features
            (default: flatten).
        context_dim: size of h_i.
        hidden_units, depth: width and hidden layers of the pair encoder and the predictor.
    """

    def __init__(self, num_outputs, num_classes=None, feature_encoder=None, context_dim=32,
                 hidden_units=64, depth=2, **kwargs):
        super().__init__(**kwargs)
        self.num_outputs = validation.check_positive_int("num_outputs", num_outputs)
        self.num_classes = None if num_classes is None else validation.check_int_at_least(
            "num_classes", num_classes, 2)
        self.context_dim = validation.check_positive_int("context_dim", context_dim)
        self.hidden_units = validation.check_positive_int("hidden_units", hidden_units)
        self.depth = validation.check_non_negative_int("depth", depth)
        self.feature_encoder = feature_encoder
        self.pair_encoder = _mlp(hidden_units, depth, context_dim, "pair_encoder")
        self.predictor = _mlp(hidden_units, depth, num_outputs, "predictor")

    def _features(self, x, training):
        shape = ops.shape(x)
        flat = ops.reshape(x, (-1,) + tuple(x.shape[2:]))
        if self.feature_encoder is not None:
            flat = self.feature_encoder(flat, training=training)
        flat = ops.cast(flat, "float32")
        return ops.reshape(flat, (shape[0], shape[1], -1))

    def task_context(self, support_x, support_y, training=False):
        """`[T, context_dim]` context vectors h_i of the support sets."""
        features = self._features(support_x, training)
        if self.num_classes is not None:
            labels = ops.one_hot(ops.cast(support_y, "int32"), self.num_classes, dtype="float32")
        else:
            labels = ops.cast(support_y, "float32")
            labels = ops.reshape(labels, (ops.shape(labels)[0], ops.shape(labels)[1], -1))
        pairs = ops.concatenate([features, labels], axis=-1)
        return ops.mean(self.pair_encoder(pairs, training=training), axis=1)

    def call(self, inputs, training=False):
        support_x, support_y, query_x = unpack_tasks(inputs)
        _check_task_shapes(
            support_x, support_y if len(support_y.shape) > 2 else support_y[..., None], query_x
        )
        context = self.task_context(support_x, support_y, training)
        query = self._features(query_x, training)
        context = ops.broadcast_to(context[:, None, :], ops.shape(query)[:2] + (self.context_dim,))
        return self.predictor(ops.concatenate([query, context], axis=-1), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_outputs": self.num_outputs,
                "num_classes": self.num_classes,
                "feature_encoder": None if self.feature_encoder is None
                else keras.saving.serialize_keras_object(self.feature_encoder),
                "context_dim": self.context_dim,
                "hidden_units": self.hidden_units,
                "depth": self.depth,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("feature_encoder") is not None:
            config["feature_encoder"] = keras.saving.deserialize_keras_object(config["feature_encoder"])
        return cls(**config)
