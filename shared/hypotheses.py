"""Hypotheses: what a notebook claims about the model it loaded, each declared in the cell that measures it.

    hypothesis = Hypotheses(model)
    hypothesis("selects", on_min, ">", 0.5, "'selects' means most of the attention")

A call compares the measured value with the threshold and shows its verdict on one line: it holds, it FAILS, or
it is not measured here (value None: the model has no such part, or the measure cannot decide; `note` says why).
Only FAILS counts against a hypothesis. The words of a hypothesis live in the notebook's markdown, once; the call
holds the number, the threshold and why that threshold follows from the words. `hypothesis.measured(key, value)`
records a number shown without a threshold (a limit of an explanation, a seed-dependent figure): never counted.

`hypothesis.summary()` ends a notebook: the one tally, every row, and the same rows as JSON (mimetype
application/json), which `read` takes back from an executed notebook: the tests and the across-seeds runs read
values there, never rendered text.
"""
import math
from dataclasses import asdict, dataclass
from typing import Optional

from .tables import markdown_table, num, pct

HOLDS, FAILS, NOT_MEASURED = "holds", "FAILS", "not measured here"
COMPARE = {">=": lambda v, t: v >= t, ">": lambda v, t: v > t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}
MIMETYPE = "application/json"


def shown(value, unit: str = "") -> str:
    """A value as the tables show it: 'n/a' for None or NaN, a percentage for unit '%', else a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool) and unit != "%":
        return f"{value:,}"
    return pct(value) if unit == "%" else num(value)


def verdict_of(value, op: str, threshold) -> str:
    """holds / FAILS / not measured here, from the value alone (None or NaN: not measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_MEASURED
    return HOLDS if COMPARE[op](value, threshold) else FAILS


@dataclass
class Hypothesis:
    key: str
    value: Optional[float]
    op: str  # ">=", ">", "<=" or "<"
    threshold: float
    why: str  # why the threshold follows from the hypothesis's words
    unit: str = ""  # "%" shows value and threshold as percentages
    note: str = ""  # how it was measured, or why it could not be

    def __post_init__(self):
        if self.op not in COMPARE:
            raise ValueError(f"hypothesis {self.key}: op must be one of {', '.join(COMPARE)}, got {self.op!r}")
        self.value = None if self.value is None else float(self.value)  # a 0-d tensor is fine
        self.threshold = float(self.threshold)

    @property
    def verdict(self) -> str:
        return verdict_of(self.value, self.op, self.threshold)

    def line(self) -> str:
        """'`selects` holds: 0.987 >= 0.900 (why)' in markdown."""
        shown_verdict = {HOLDS: "holds", FAILS: "**FAILS**"}.get(self.verdict, "*not measured here*")
        note = f"; {self.note}" if self.note else ""
        return (f"`{self.key}` {shown_verdict}: {shown(self.value, self.unit)} {self.op} "
                f"{shown(self.threshold, self.unit)} ({self.why}{note})")

    def _repr_markdown_(self):
        return self.line()

    def __repr__(self):
        return self.line().replace("**", "").replace("*", "").replace("`", "")


class Hypotheses(dict):
    """{key: Hypothesis} of one notebook, in the order declared; declaring a key again (a cell run twice) replaces
    it."""

    def __init__(self, model=None):
        super().__init__()
        self.run_id = model.metadata.get("run_id") if model is not None else None
        self.measurements = {}  # key -> (value, unit)

    def __call__(self, key, value, op, threshold, why, unit="", note=""):
        """Declare a hypothesis and show its verdict (self[key] holds it; nothing is returned, so a cell that
        ends with a call shows its line once)."""
        self[key] = Hypothesis(key, value, op, threshold, why, unit, note)
        _display(self[key])

    def measured(self, key, value, unit=""):
        """Record (and show) a number that has no threshold: a measurement, never counted."""
        self.measurements[key] = (None if value is None else float(value), unit)
        print(f"{key}: {shown(value, unit)}")

    def counts(self) -> dict:
        return {v: sum(h.verdict == v for h in self.values()) for v in (HOLDS, FAILS, NOT_MEASURED)}

    def tally(self) -> str:
        """'17 of 19 hypotheses measured on this model hold, 2 FAIL; 3 not measured here'."""
        c = self.counts()
        text = f"{c[HOLDS]} of {c[HOLDS] + c[FAILS]} hypotheses measured on this model hold"
        text += f", {c[FAILS]} FAIL" if c[FAILS] else ""
        return text + (f"; {c[NOT_MEASURED]} not measured here" if c[NOT_MEASURED] else "")

    def table(self, keys=None) -> str:
        """Markdown: every hypothesis (or those named) with its value, threshold, why and verdict."""
        rows = [[f"`{h.key}`", shown(h.value, h.unit), f"{h.op} {shown(h.threshold, h.unit)}", h.why + (
            f" ({h.note})" if h.note else ""), {FAILS: "**FAILS**"}.get(h.verdict, h.verdict)]
                for h in (self.values() if keys is None else [self[k] for k in keys])]
        return markdown_table(["hypothesis", "measured", "threshold", "why this threshold", "verdict"], rows, "lrrll")

    def record(self) -> dict:
        """Every row as plain data: what summary() displays as JSON and `read` takes back."""
        return {"run_id": self.run_id, "hypotheses": [{**asdict(h), "verdict": h.verdict} for h in self.values()],
                "measurements": [{"key": k, "value": v, "unit": u} for k, (v, u) in self.measurements.items()]}

    def summary(self):
        """Display the tally, the table of every hypothesis, and the record as JSON (for the tests)."""
        _display({"text/markdown": f"**{self.tally()}**\n\n{self.table()}"}, raw=True)
        _display({MIMETYPE: self.record(), "text/plain": f"{len(self)} hypotheses as JSON"}, raw=True)


def _display(obj, raw=False):
    try:
        from IPython.display import display
    except ImportError:  # outside IPython: the line is enough
        print(obj if not raw else obj.get("text/markdown", ""))
        return
    display(obj, raw=raw)


def read(notebook) -> dict:
    """The record the last summary() of an executed notebook (an nbformat node, or a path) displayed; ValueError
    when it has none (not executed, or stopped before its summary)."""
    if not hasattr(notebook, "cells"):
        import nbformat
        notebook = nbformat.read(str(notebook), as_version=4)
    found = [o["data"][MIMETYPE] for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if MIMETYPE in o.get("data", {}) and "hypotheses" in o["data"][MIMETYPE]]
    if not found:
        raise ValueError("the notebook shows no hypotheses record: execute it to the end (its summary cell)")
    return found[-1]


def disagreeing(record: dict) -> list:
    """The keys of a record whose verdict does not follow from its own value and threshold."""
    return [h["key"] for h in record["hypotheses"] if verdict_of(h["value"], h["op"], h["threshold"]) != h["verdict"]]
