"""The table `transfer_bias_report` returns: accuracy per class and group, and what transfer changed."""

import dataclasses

from keras_transfer.recipes._row_table import RowTable
from keras_transfer.recipes._row_table import markdown_table

_COLUMNS = (
    ("kind", "kind"),
    ("name", "name"),
    ("n", "n"),
    ("transferred", "transferred"),
    ("baseline", "baseline"),
    ("source", "source"),
    ("source_entropy", "source entropy"),
    ("source_confidence", "source confidence"),
)


def _cell(value, digits):
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class BiasReport(RowTable):
    """Accuracy of a transferred model per class and per group, against a reference.

    Each row is a dict with the keys `kind` ("all", "class" or "group"), `name`, `n`
    (test examples), `transferred` (its accuracy), and, when given, `baseline` and
    `source` (their accuracies on the same examples) or `source_entropy` and
    `source_confidence` (the source's mean normalised entropy and mean top
    probability, when its outputs are not the target classes). When there is a
    reference (`baseline`, else a `source` over the target classes) a row also has
    `difference` (transferred minus reference accuracy), `low` and `high` (its paired
    confidence interval) and `harmed` (True when the whole interval is below 0).
    Iterate over it for the rows, index it by position or row name, `print` it for a
    markdown table, `plot(path)` for a forest plot of the differences.

    Attributes:
        rows: the rows, a tuple of dicts (overall, then classes, then groups).
        reference: "baseline", "source" or None (no difference computed).
        confidence: the coverage of the intervals.

    Example:

    >>> report = keras_transfer.recipes.BiasReport(
    ...     ({"kind": "all", "name": "all", "n": 40, "transferred": 0.8, "baseline": 0.75,
    ...       "difference": 0.05, "low": -0.1, "high": 0.2, "harmed": False},
    ...      {"kind": "group", "name": "rare", "n": 20, "transferred": 0.2, "baseline": 0.7,
    ...       "difference": -0.5, "low": -0.7, "high": -0.25, "harmed": True}), "baseline", 0.95)
    >>> report.harmed, report["rare"]["n"]
    (['rare'], 20)
    >>> print(report)
    | kind  | name | n  | transferred | baseline | transferred - baseline [95% CI] | harmed |
    |-------|------|----|-------------|----------|---------------------------------|--------|
    | all   | all  | 40 | 0.800       | 0.750    | +0.050 [-0.100, +0.200]         |        |
    | group | rare | 20 | 0.200       | 0.700    | -0.500 [-0.700, -0.250]         | yes    |
    """

    rows: tuple
    reference: str = None
    confidence: float = 0.95

    @property
    def harmed(self):
        """Names of the rows where transfer is significantly worse than the reference."""
        return [row["name"] for row in self.rows if row.get("harmed")]

    def to_markdown(self, digits=3):
        """The report as a markdown table.

        Args:
            digits: decimals of the accuracies and differences.

        Returns:
            A string: a header line, a separator line and one line per row.
        """
        present = [c for c in _COLUMNS if any(c[0] in row for row in self.rows)]
        header = [c[1] for c in present]
        if self.reference:
            header += [f"transferred - {self.reference} [{100 * self.confidence:g}% CI]", "harmed"]
        cells = [header]
        for row in self.rows:
            line = [_cell(row.get(key), digits) for key, _ in present]
            if self.reference:
                line.append(f"{row['difference']:+.{digits}f} [{row['low']:+.{digits}f}, {row['high']:+.{digits}f}]")
                line.append("yes" if row["harmed"] else "")
            cells.append(line)
        return markdown_table(cells)

    def plot(self, path, title=None):
        """Writes a forest plot of the differences and their intervals to `path`.

        One line per row: the difference (transferred minus reference accuracy) with
        its confidence interval, harmed rows in red, a vertical line at 0.

        Args:
            path: the image file to write (PNG, PDF, SVG: matplotlib picks by suffix).
            title: the plot title; default names the reference and the confidence.

        Returns:
            `path`.

        Raises:
            ValueError: if the report has no reference (neither a baseline nor a
                source over the target classes was given).
            ImportError: if matplotlib is not installed.
        """
        if not self.reference:
            raise ValueError(
                "`plot` needs differences, which need a reference. Received: a report with reference=None. "
                "Pass `baseline=` (a from-scratch model) or a `source=` over the target classes."
            )
        try:
            import matplotlib
        except ImportError as error:  # matplotlib is optional for the report itself
            raise ImportError("`BiasReport.plot` needs matplotlib: `pip install matplotlib`.") from error
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = list(self.rows)[::-1]
        fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(rows) + 1.2))
        for i, row in enumerate(rows):
            color = "#c44e52" if row["harmed"] else "#4c72b0"
            ax.plot([row["low"], row["high"]], [i, i], color=color, linewidth=2)
            ax.plot([row["difference"]], [i], "o", color=color)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [f"{row['name']} (n={row['n']})" for row in rows], fontsize=8)
        ax.set_xlabel(f"accuracy: transferred - {self.reference}")
        ax.set_title(title or f"Transfer vs {self.reference}, {100 * self.confidence:g}% paired intervals", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
