"""The row-table protocol shared by the report objects recipes return (`BiasReport`, `TransferabilityRanking`)."""


def markdown_table(cells):
    """A markdown table from rows of strings, the first being the header; columns padded to their widest cell."""
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


class RowTable:
    """A list of row dicts with a `name` each: `len`, iteration, indexing by position or name, markdown `str`.

    Subclasses are dataclasses with a `rows` field and a `to_markdown()` method.
    """

    row_kind = "row"

    @property
    def names(self):
        """Row names, in table order."""
        return [row["name"] for row in self.rows]

    def __str__(self):
        return self.to_markdown()

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            for row in self.rows:
                if row["name"] == key:
                    return row
            raise KeyError(f"No {self.row_kind} named {key!r}. Names: {self.names}")
        return self.rows[key]
