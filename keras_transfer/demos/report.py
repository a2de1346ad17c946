"""Small helpers for demo output: terminal tables and PNG plots."""


def print_table(header, rows):
    """Prints a markdown table (readable in a terminal, pasteable into BENCHMARKS.md)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def bar_plot(values, path, title="", ylabel=""):
    """Writes a bar chart of {label: value} to `path` (PNG, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = list(values)
    bars = ax.bar(labels, [values[k] for k in labels], color="#4c72b0")
    for bar, label in zip(bars, labels):
        ax.annotate(
            f"{values[label]:.2f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
