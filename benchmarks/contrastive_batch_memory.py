"""Peak memory and step time of SimCLR and CLIP training steps at large batches, plain vs gradient caching.

Contrastive losses take their negatives from the batch, so users want thousands of
examples per step; the towers' activations grow with the batch. `chunk_size`
(gradient caching, Gao et al. 2021: embeddings computed `chunk_size` rows at a time
without their graphs, the loss's gradient with respect to the embeddings on the whole
batch, then a chunked backward pass) bounds activation memory by one chunk's.

Each (model, batch, chunk size) runs in its own process (`--quick`: its two share one): build the model and the data,
reset the process's peak resident memory (`/proc/self/clear_refs`), one warm-up step
(tracing, the optimizer's variables), then `--steps` timed `train_on_batch` steps on
synthetic data. Reported: the median of the timed steps and the peak resident memory of
all the steps minus the resident memory before them (what training needs beyond the
weights and the data, tracing included), in MiB.

- SimCLR: a 3-conv encoder (32 filters, `--image-size` 32 x 32 x 3 inputs, no BatchNorm so
  that chunks do not change the step), 64-d projection; a batch of B pairs is 2B images.
- CLIP: the same image tower, a 2-layer `TextTransformerEncoder` (dim 64, 16 tokens,
  vocabulary 1,000); B (image, text) pairs.

    python benchmarks/contrastive_batch_memory.py [--quick] [--models simclr clip]
        [--batches 256 512 1024 2048 4096] [--chunk-size 256] [--steps 3] [--image-size 32]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _image_tower(keras, size):
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )


def worker(specs):
    """Each configuration of `specs` in turn, in this process: prints one `RESULT {json}` each."""
    for spec in specs:
        measure(spec)


def measure(spec):
    """One configuration: its peak memory above the memory before its steps, its step time, its loss."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import keras_transfer as kt

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch, chunk, size = spec["batch"], spec["chunk"], spec["image_size"]
    if spec["model"] == "simclr":
        model = kt.models.SimCLR(_image_tower(keras, size), projection_dim=64, temperature=0.5, chunk_size=chunk)
        data = tuple(rng.uniform(size=(batch, size, size, 3)).astype("float32") for _ in range(2))
    else:
        text = kt.layers.TextTransformerEncoder(1000, 16, embedding_dim=64, num_layers=2, num_heads=2)
        model = kt.models.CLIP(_image_tower(keras, size), text, projection_dim=64, chunk_size=chunk)
        data = {
            "images": rng.uniform(size=(batch, size, size, 3)).astype("float32"),
            "token_ids": rng.integers(1, 1000, size=(batch, 16)).astype("int32"),
        }
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    model(data[0] if spec["model"] == "simclr" else data)  # the weights
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size (VmHWM) to the current one
    before = _status_kib("VmRSS")
    model.train_on_batch(data)  # tracing and the optimizer's variables
    times = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        logs = model.train_on_batch(data, return_dict=True)
        times.append(time.perf_counter() - start)
    peak = _status_kib("VmHWM")
    result = {
        "step_s": statistics.median(times),
        "step_spread_s": max(times) - min(times),
        "peak_mib": (peak - before) / 1024,
        "loss": float(logs["loss"]),
    }
    print("RESULT " + json.dumps(result), flush=True)


def run(specs):
    """Runs `specs` in turn in one fresh process; returns one result (or `{"error": ...}`) per spec."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(specs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    results = [json.loads(line[len("RESULT ") :]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    error = {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return results + [error] * (len(specs) - len(results))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", choices=("simclr", "clip"), default=["simclr", "clip"])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    from benchmarks._common import print_table

    if args.quick:
        args.batches, args.chunk_size, args.steps, args.image_size = [32], 16, 1, 16
        args.models = ["clip"]  # SimCLR's chunked step: tests/models/test_simclr.py
    specs = [
        {"model": model, "batch": batch, "chunk": chunk, "steps": args.steps, "image_size": args.image_size}
        for model in args.models
        for batch in args.batches
        for chunk in (None, args.chunk_size)
        if chunk is None or chunk < batch
    ]
    # One fresh process per configuration; --quick runs its two in one process (importing TensorFlow twice
    # would double CI's time), each peak still measured from its own steps' start.
    groups = [specs] if args.quick else [[spec] for spec in specs]
    results = {}
    for group in groups:
        for spec, r in zip(group, run(group)):
            results[(spec["model"], spec["batch"], spec["chunk"])] = r
            print(f"{spec['model']} batch {spec['batch']} chunk {spec['chunk']}: {r}", flush=True)
    print(
        f"\nPeak memory of the training steps (resident, MiB, above the memory before them) and median step time "
        f"({args.steps} steps after a warm-up), plain vs chunk_size={args.chunk_size}:"
    )
    rows = []
    for model in args.models:
        for batch in args.batches:
            plain, chunked = results.get((model, batch, None), {}), results.get((model, batch, args.chunk_size), {})

            def cell(r, key, fmt):
                return fmt.format(r[key]) if key in r else r.get("error", "—")

            rows.append(
                [model, batch, cell(plain, "peak_mib", "{:,.0f}"), cell(chunked, "peak_mib", "{:,.0f}"),
                 cell(plain, "step_s", "{:.2f}"), cell(chunked, "step_s", "{:.2f}")]
            )  # fmt: skip
    print_table(["model", "batch", "plain MiB", "chunked MiB", "plain s/step", "chunked s/step"], rows)
    return {f"{m} {b} {c}": r for (m, b, c), r in results.items()}


if __name__ == "__main__":
    main()
