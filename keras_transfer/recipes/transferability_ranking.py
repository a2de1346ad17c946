"""The table `rank_transferability` returns: candidates sorted best first."""

import dataclasses

from keras_transfer.recipes._row_table import RowTable
from keras_transfer.recipes._row_table import markdown_table


@dataclasses.dataclass(frozen=True)
class TransferabilityRanking(RowTable):
    """Candidate models ranked by a transferability score, best first.

    Each row is a dict with the keys `rank` (1 is best), `name`, `score` (higher is
    better), `feature_dim` (the width of the features scored, or the number of source
    classes for LEEP and NCE) and `seconds` (feature extraction plus scoring). Iterate
    over it for the rows, index it by position or by candidate name, `print` it for a
    markdown table.

    Attributes:
        metric: the score's name ("logme", "leep", "nce" or "h_score").
        rows: the rows, a tuple of dicts sorted by descending score.

    Example:

    >>> ranking = keras_transfer.recipes.TransferabilityRanking(
    ...     "logme", ({"rank": 1, "name": "b", "score": -0.2, "feature_dim": 8, "seconds": 0.1},
    ...               {"rank": 2, "name": "a", "score": -0.9, "feature_dim": 4, "seconds": 0.1}))
    >>> ranking.best, ranking["a"]["rank"], ranking.names
    ('b', 2, ['b', 'a'])
    >>> print(ranking)
    | rank | name | logme   | feature_dim | seconds |
    |------|------|---------|-------------|---------|
    | 1    | b    | -0.2000 | 8           | 0.10    |
    | 2    | a    | -0.9000 | 4           | 0.10    |
    """

    metric: str
    rows: tuple
    row_kind = "candidate"

    @property
    def best(self):
        """The name of the best-scoring candidate."""
        return self.rows[0]["name"]

    @property
    def scores(self):
        """`{name: score}`, best first."""
        return {row["name"]: row["score"] for row in self.rows}

    def to_markdown(self, digits=4):
        """The ranking as a markdown table (the score column is named after the metric).

        Args:
            digits: decimals of the scores.

        Returns:
            A string: a header line, a separator line and one line per candidate.
        """
        header = ["rank", "name", self.metric, "feature_dim", "seconds"]
        cells = [header] + [
            [str(row["rank"]), str(row["name"]), f"{row['score']:.{digits}f}", str(row["feature_dim"])]
            + [f"{row['seconds']:.2f}"]
            for row in self.rows
        ]
        return markdown_table(cells)
