"""A report table: rows of cells, each our mean +- std over seeds with the number of seeds, and the
paper's value beside it."""

from dataclasses import dataclass, field

# how a value reads, and the threshold whose side decides "win or lose" / "saves or costs"
UNITS = {"points": 0.0, "percent": 0.0, "factor": 1.0}


@dataclass
class Cell:
    mean: float | None
    std: float | None = None
    n: int = 0
    paper: float | None = None
    unit: str = "points"
    flag: str = ""  # a mark such as "*" that a table note explains

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; allowed: {sorted(UNITS)}")

    @property
    def agrees(self):
        """Whether ours and the paper's fall on the same side (win/lose at xi = 0, saving/cost,
        faster/slower); None when either is missing."""
        if self.mean is None or self.paper is None:
            return None
        threshold = UNITS[self.unit]
        return (self.mean >= threshold) == (self.paper >= threshold)


MISSING = Cell(None)


@dataclass
class Row:
    setting: str  # the dense baseline's setting: arch, data, recipe, epochs
    label: str
    cells: dict   # {column key: Cell}


@dataclass
class Table:
    number: int
    title: str
    columns: dict  # {column key: header}
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def name(self):
        return f"table{self.number}"

    def cell(self, setting, label, column):
        for row in self.rows:
            if row.setting == setting and row.label == label:
                return row.cells.get(column, MISSING)
        raise KeyError(f"table {self.number} has no row {label!r} in {setting!r}")
