"""Ganin et al. (JMLR 2016) §5.1: inter-twinning moons, target rotated by 35 degrees.

150 + 150 labelled source points, 300 unlabelled target points, a network with one
hidden layer of 15 sigmoid units. Source-only and DANN (same network, same
optimizer, same batches) over several seeds in the same run; target accuracy on
1000 held-out rotated points, the domain classifier's accuracy in the last epoch,
and a decision-boundary figure for seed 0.

    python -m benchmarks.domain_adaptation_moons [--quick] [--seeds 5] [--output DIR]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks._moons_experiment import MOONS_SETTINGS  # noqa: E402
from benchmarks._moons_experiment import plot_decision_boundaries  # noqa: E402
from benchmarks._moons_experiment import train_moons  # noqa: E402
from keras_transfer.datasets import domain_pairs  # noqa: E402
from keras_transfer.datasets import load_moons  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=MOONS_SETTINGS["epochs"])
    parser.add_argument("--output", default="benchmarks/results")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 2
    os.makedirs(args.output, exist_ok=True)
    start = time.time()
    rows = []
    for seed in range(args.seeds):
        data = load_moons(seed=seed)
        row = {"seed": seed}
        models = {}
        for name, adapt in (("source-only", False), ("DANN", True)):
            model, history = train_moons(data, seed=seed, adapt=adapt, epochs=args.epochs)
            row[name] = model.evaluate(*data.target_test, verbose=0, return_dict=True)["label_accuracy"]
            row[name + " source"] = model.evaluate(*data.source_test, verbose=0, return_dict=True)["label_accuracy"]
            if adapt:
                row["domain accuracy"] = history["domain_accuracy"][-1]
                held_out = domain_pairs(*data.source_test, data.target_test[0], batch_size=1000, shuffle=False)
                row["held-out domain accuracy"] = model.evaluate(held_out, verbose=0, return_dict=True)[
                    "domain_accuracy"
                ]
            models[name] = model
        if seed == 0:
            row["png"] = plot_decision_boundaries(
                data, models, os.path.join(args.output, "moons_decision_boundaries.png")
            )
        rows.append(row)
        print(
            f"seed {seed}: source-only {row['source-only']:.3f}, DANN {row['DANN']:.3f}, "
            f"domain acc {row['domain accuracy']:.3f} (held-out {row['held-out domain accuracy']:.3f})",
            flush=True,
        )
    summary = {}
    for key in (
        "source-only",
        "DANN",
        "source-only source",
        "DANN source",
        "domain accuracy",
        "held-out domain accuracy",
    ):
        values = np.array([r[key] for r in rows])
        summary[key] = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min())}
    print(
        f"\nMoons, target rotated 35 degrees, {args.seeds} seeds, {args.epochs} epochs ({time.time() - start:.0f} s)\n"
    )
    print("| model | target acc mean ± std (min) | source test acc | domain acc: last epoch / held-out |")
    print("| --- | --- | --- | --- |")
    for name in ("source-only", "DANN"):
        t, s = summary[name], summary[name + " source"]
        domain = (
            f"{summary['domain accuracy']['mean']:.3f} / {summary['held-out domain accuracy']['mean']:.3f}"
            if name == "DANN"
            else "-"
        )
        print(f"| {name} | {t['mean']:.3f} ± {t['std']:.3f} ({t['min']:.3f}) | {s['mean']:.3f} | {domain} |")
    print(
        "\nper seed (target acc): " + "; ".join(f"{r['seed']}: {r['source-only']:.3f} -> {r['DANN']:.3f}" for r in rows)
    )
    print(f"figure: {rows[0]['png']}")
    return {"summary": summary, "rows": rows, "png": rows[0]["png"]}


if __name__ == "__main__":
    main(sys.argv[1:])
