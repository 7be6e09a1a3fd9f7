"""The paper's reported numbers (analysis/paper.yaml): which setting each table was run in, and
the value of every (table, row, column)."""

from dataclasses import dataclass
from pathlib import Path

import yaml

PAPER = Path(__file__).resolve().parents[2] / "analysis" / "paper.yaml"
# what a table's setting may constrain; a sweep's cell gets the paper's value only where all match
_CONSTRAINTS = ("arch", "dataset", "criterion", "p")


@dataclass
class Reference:
    tables: dict
    values: dict  # {(table, row, column): value}
    notes: dict   # {(table, row, column): note}
    source: str

    def title(self, table):
        return self.tables.get(table, {}).get("title", f"Table {table}")

    def value(self, table, row, column, context):
        """The paper's value for our cell, or None when the paper has none or its setting differs."""
        setting = self.tables.get(table, {})
        if context.get("rounds", 1) != 1:  # the paper removes blocks in one shot
            return None
        if any(name in setting and context.get(name) != setting[name] for name in _CONSTRAINTS):
            return None
        return self.values.get((table, str(row), str(column)))

    def note(self, table, row, column):
        return self.notes.get((table, str(row), str(column)))


def load_reference(path=None):
    path = Path(path or PAPER)
    if not path.is_file():
        raise ValueError(f"no such reference file: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    tables = {int(k): dict(v or {}) for k, v in (data.get("tables") or {}).items()}
    values, notes = {}, {}
    for i, entry in enumerate(data.get("values") or []):
        missing = {"table", "row", "column", "value"} - set(entry)
        if missing:
            raise ValueError(f"{path}: values[{i}] lacks {sorted(missing)}; each entry needs table, row, column, value")
        key = (int(entry["table"]), str(entry["row"]), str(entry["column"]))
        if key in values:
            raise ValueError(f"{path}: values[{i}] repeats table {key[0]}, row {key[1]!r}, column {key[2]!r}")
        values[key] = float(entry["value"])
        if entry.get("note"):
            notes[key] = entry["note"]
    return Reference(tables, values, notes, data.get("source", str(path)))
