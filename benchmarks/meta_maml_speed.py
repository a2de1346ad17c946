"""MAML meta-step time: keras_transfer.MetaModel vs a JAX jit+vmap MAML vs a torch.func MAML.

Same spec for all (Finn et al. sinusoid): 1-40-40-1 ReLU MLP, K=10 support + 10 query points,
one inner step alpha=0.01, meta-batch 25 tasks, Adam 1e-3, MSE. One fixed meta-batch is
reused (data generation is not timed). Reported: median over repeats of the mean time per
meta-step (ms) over `--steps` steps, after a warm-up (tracing/compilation not timed; for
keras the clock runs between the first and last batch end of `fit`, so the one-off cost of
starting `fit` is excluded). Repeats are round-robin over the implementations, so all see the
same load on a shared machine. torch runs on one thread (two OpenMP threads on the shared
2-core machine made a tiny bmm 50x slower).
JAX and torch are optional peers: skipped with the reason when not installed.

    python benchmarks/meta_maml_speed.py [--quick]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._common import print_table  # noqa: E402
from keras_transfer.datasets import sinusoid_tasks  # noqa: E402
from keras_transfer.models import MetaModel  # noqa: E402

ALPHA, LR, META_BATCH, K = 0.01, 1e-3, 25, 10


def mlp():
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def time_keras(
    batch,
    steps,
    first_order=False,
    vectorize=True,
    jit_compile="auto",
    learn_inner_rates=None,
    steps_per_execution=1,
    steps_per_batch=50,
):
    """ms per meta-step of `MetaModel.fit` (Keras's whole loop: data, callbacks, metrics)."""
    keras.utils.set_random_seed(0)
    steps_per_batch = max(1, min(steps_per_batch, steps // 4))
    meta = MetaModel(
        mlp(),
        inner_learning_rate=ALPHA,
        first_order=first_order,
        vectorize=vectorize,
        learn_inner_rates=learn_inner_rates,
        steps_per_batch=steps_per_batch,
    )
    meta.compile(
        keras.optimizers.Adam(LR), loss="mse", jit_compile=jit_compile, steps_per_execution=steps_per_execution
    )
    data = tf.data.Dataset.from_tensors(batch).repeat()
    if steps_per_batch > 1:
        data = data.batch(steps_per_batch, drop_remainder=True)
    elements = max(1, steps // steps_per_batch)
    meta.fit(data, steps_per_epoch=2 * steps_per_execution, epochs=1, verbose=0)  # trace/compile
    elements = max(elements, 2 * steps_per_execution)

    class Clock(keras.callbacks.Callback):
        # Times between batch ends, so the fixed cost of starting `fit` is not counted.
        def on_train_begin(self, logs=None):
            self.marks = []

        def on_train_batch_end(self, batch, logs=None):
            self.marks.append((batch, time.perf_counter()))

    clock = Clock()

    def run():
        meta.fit(data, steps_per_epoch=elements, epochs=1, verbose=0, callbacks=[clock])
        (b0, t0), (b1, t1) = clock.marks[0], clock.marks[-1]
        return (t1 - t0) / ((b1 - b0) * steps_per_batch) * 1e3

    return run


def time_jax(batch, steps, first_order=False):
    import jax
    import jax.numpy as jnp

    (sx, sy, qx), qy = (tuple(jnp.asarray(a) for a in batch[0]), jnp.asarray(batch[1]))
    key = jax.random.PRNGKey(0)
    sizes = [1, 40, 40, 1]
    params = []
    for i in range(3):
        key, sub = jax.random.split(key)
        limit = np.sqrt(6.0 / (sizes[i] + sizes[i + 1]))
        params.append(
            (jax.random.uniform(sub, (sizes[i], sizes[i + 1]), minval=-limit, maxval=limit), jnp.zeros(sizes[i + 1]))
        )

    def forward(p, x):
        for w, b in p[:-1]:
            x = jax.nn.relu(x @ w + b)
        return x @ p[-1][0] + p[-1][1]

    def loss(p, x, y):
        return jnp.mean((forward(p, x) - y) ** 2)

    def task_loss(p, sx, sy, qx, qy):
        g = jax.grad(loss)(p, sx, sy)
        if first_order:
            g = jax.lax.stop_gradient(g)
        fast = jax.tree_util.tree_map(lambda a, b: a - ALPHA * b, p, g)
        return loss(fast, qx, qy)

    def meta_loss(p, sx, sy, qx, qy):
        return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(p, sx, sy, qx, qy))

    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)

    @jax.jit
    def step(p, m, v, t, sx, sy, qx, qy):  # Adam by hand (optax is not a dependency)
        value, g = jax.value_and_grad(meta_loss)(p, sx, sy, qx, qy)
        m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        mh = jax.tree_util.tree_map(lambda a: a / (1 - 0.9**t), m)
        vh = jax.tree_util.tree_map(lambda a: a / (1 - 0.999**t), v)
        p = jax.tree_util.tree_map(lambda a, b, c: a - LR * b / (jnp.sqrt(c) + 1e-7), p, mh, vh)
        return p, m, v, value

    state = list(step(params, m, v, 1.0, sx, sy, qx, qy)) + [2.0]
    jax.block_until_ready(state[3])

    def run():
        p, m, v, value, t = state
        start = time.perf_counter()
        for _ in range(steps):
            p, m, v, value = step(p, m, v, t, sx, sy, qx, qy)
            t += 1.0
        jax.block_until_ready(value)
        state[:] = [p, m, v, value, t]
        return (time.perf_counter() - start) / steps * 1e3

    return run


def _eager_step_timer(one_step, steps):
    """Warms `one_step` up (the first torch.func calls build its vmap/grad rules); returns ms per step."""
    for _ in range(5):
        one_step()

    def run():
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        return (time.perf_counter() - start) / steps * 1e3

    return run


def time_torch(batch, steps, first_order=False):
    import torch
    from torch.func import functional_call
    from torch.func import grad
    from torch.func import vmap

    torch.manual_seed(0)
    # One thread: with 2 OpenMP threads on a shared 2-core machine a tiny bmm took 1 ms instead of 20 us.
    torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 40), torch.nn.ReLU(), torch.nn.Linear(40, 40), torch.nn.ReLU(), torch.nn.Linear(40, 1)
    )
    (sx, sy, qx), qy = (tuple(torch.from_numpy(a) for a in batch[0]), torch.from_numpy(batch[1]))
    names = [n for n, _ in net.named_parameters()]
    params = [p for _, p in net.named_parameters()]
    optimizer = torch.optim.Adam(params, lr=LR)

    def loss(p, x, y):
        return torch.mean((functional_call(net, dict(zip(names, p)), (x,)) - y) ** 2)

    def task_loss(p, sx, sy, qx, qy):
        g = grad(loss)(p, sx, sy)
        if first_order:
            g = [gi.detach() for gi in g]
        return loss([a - ALPHA * b for a, b in zip(p, g)], qx, qy)

    def meta_loss(p):
        return vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(p, sx, sy, qx, qy).mean()

    def one_step():
        optimizer.zero_grad()
        value = meta_loss(params)
        value.backward()
        optimizer.step()
        return value

    return _eager_step_timer(one_step, steps)


def time_torch_bmm(batch, steps, first_order=False):
    """torch eager, weights tiled per task and batched matmuls (torch.autograd.grad, create_graph)."""
    import torch

    torch.manual_seed(0)
    # One thread: with 2 OpenMP threads on a shared 2-core machine a tiny bmm took 1 ms instead of 20 us.
    torch.set_num_threads(1)
    (sx, sy, qx), qy = (tuple(torch.from_numpy(a) for a in batch[0]), torch.from_numpy(batch[1]))
    sizes = [1, 40, 40, 1]
    params = []
    for i in range(3):
        w = torch.empty(sizes[i], sizes[i + 1])
        torch.nn.init.xavier_uniform_(w)
        params += [w.requires_grad_(), torch.zeros(sizes[i + 1], requires_grad=True)]
    optimizer = torch.optim.Adam(params, lr=LR)
    tasks = sx.shape[0]

    def forward(p, x):
        for i in range(0, len(p), 2):
            x = torch.baddbmm(p[i + 1].unsqueeze(1), x, p[i])
            if i < len(p) - 2:
                x = torch.relu(x)
        return x

    def one_step():
        optimizer.zero_grad()
        tiled = [p.unsqueeze(0).expand(tasks, *p.shape) for p in params]
        inner = ((forward(tiled, sx) - sy) ** 2).mean(dim=(1, 2)).sum()
        grads = torch.autograd.grad(inner, tiled, create_graph=not first_order)
        fast = [t - ALPHA * g for t, g in zip(tiled, grads)]
        value = ((forward(fast, qx) - qy) ** 2).mean()
        value.backward()
        optimizer.step()
        return value

    return _eager_step_timer(one_step, steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    steps = args.steps or (20 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 5)
    batch = sinusoid_tasks(META_BATCH, K, K, seed=0)

    runners, notes = {}, []
    configs = [
        ("keras_transfer MetaModel, vectorised + XLA", dict()),
        ("keras_transfer MetaModel, vectorised + XLA, first-order", dict(first_order=True)),
    ]
    if not args.quick:
        configs += [
            ("keras_transfer MetaModel, vectorised + XLA, Meta-SGD", dict(learn_inner_rates="per_parameter")),
            ("keras_transfer, steps_per_batch=1 (one call per meta-step)", dict(steps_per_batch=1)),
            (
                "keras_transfer, steps_per_batch=1, steps_per_execution=50",
                dict(steps_per_batch=1, steps_per_execution=50),
            ),
            ("keras_transfer, vectorised, no XLA", dict(jit_compile=False)),
            ("keras_transfer, per-task loop, no XLA", dict(vectorize=False, jit_compile=False)),
            ("keras_transfer, per-task loop + XLA", dict(vectorize=False, jit_compile=True)),
        ]
    for name, kwargs in configs:
        runners[name] = time_keras(batch, steps, **kwargs)
    # torch.func runs eagerly (~100x slower here): fewer steps keep the run short.
    peers = [
        ("JAX jit+vmap", time_jax, steps),
        ("torch.func vmap", time_torch, max(5, steps // 10)),
        ("torch eager, tiled bmm", time_torch_bmm, max(5, steps // 4)),
    ]
    if args.quick:  # CI: one peer of each kind, second order only
        peers = [peers[0], peers[2]]
    for peer, fn, n in peers:
        for first_order in (False,) if args.quick else (False, True):
            name = f"{peer}" + (", first-order" if first_order else "")
            try:
                runners[name] = fn(batch, n, first_order=first_order)
            except ImportError as error:
                notes.append(f"{peer} skipped: {error} (install it for the comparison).")
                break

    # Round-robin repeats: every implementation sees the same (shared-machine) load.
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].append(run())
    results = {name: statistics.median(values) for name, values in times.items()}
    base = results.get("JAX jit+vmap")
    header = ["implementation", "ms / meta-step", "vs JAX (second-order)"]
    rows = [[name, f"{ms:.3f}", f"{ms / base:.2f}x" if base else "n/a"] for name, ms in results.items()]
    print(
        f"\nMAML sinusoid meta-step, {META_BATCH} tasks x (K={K} + {K}), 1-40-40-1 MLP, "
        f"{steps} steps x median of {repeats}; keras_transfer rows use fit with "
        "steps_per_batch=50 unless stated"
    )
    print_table(header, rows)
    so = results["keras_transfer MetaModel, vectorised + XLA"]
    fo = results["keras_transfer MetaModel, vectorised + XLA, first-order"]
    print(f"\nfirst-order / second-order time (keras_transfer): {fo / so:.2f}")
    for note in notes:
        print(note)
    return results


if __name__ == "__main__":
    main()
