"""Claims as hypotheses: what a notebook says about a model, each measured on the model it loaded.

A Claim is a hypothesis about the mechanism: a measured value, a threshold that follows from what the claim says
(`why` states the reasoning: "selects" means almost all of SEP's attention, so >= 0.9), and a verdict with three
values: it holds, it FAILS, or it is not measured here (the model has no such component, or the measure is
undecided, with the reason). Only FAILS counts against a hypothesis. A Measurement is a number a section shows
beside its claims (a limit of an explanation, a figure that differs from seed to seed): it has no threshold and is
never counted. Each task's claims live in its folder, built from the record of numbers its sections measure.
"""
import math
from dataclasses import dataclass
from typing import Optional

from .faithfulness import weakest_family
from .tables import markdown_table, num, pct

HOLDS, FAILS, NOT_MEASURED = "holds", "FAILS", "not measured here"
COMPARE = {">=": lambda v, t: v >= t, ">": lambda v, t: v > t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}

# The thresholds that recur, and what they mean (every claim states its own `why`).
BAR_UNIFORM, BAR_FAMILY = 0.999, 0.99  # "solves the task": the project's bar for a trained model (README)
MOST = 0.5  # "most": more than half
ALMOST_ALL = 0.9  # "almost all", "selects", "fits": at most a tenth left over
COMPLETE = 0.99  # "recovers the model's loss", "explains": all but 1%


def shown(value, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool) and unit != "%":
        return f"{value:,}"
    return pct(value) if unit == "%" else num(value)


@dataclass
class Claim:
    key: str  # short name, for tests and for verdict()
    text: str  # the hypothesis, naming the component measured
    value: Optional[float]  # the measurement; None where it cannot be measured on this model (note says why)
    op: str  # how value compares with threshold: ">=", ">", "<=" or "<"
    threshold: float
    why: str = ""  # why the threshold follows from what the claim says
    unit: str = ""  # "%" shows value and threshold as percentages
    note: str = ""  # how it was measured, or why it could not be

    def __post_init__(self):
        if self.op not in COMPARE:
            raise ValueError(f"claim {self.key}: op must be one of {', '.join(COMPARE)}, got {self.op!r}")

    @property
    def verdict(self) -> str:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return NOT_MEASURED
        return HOLDS if COMPARE[self.op](self.value, self.threshold) else FAILS

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    @property
    def fails(self) -> bool:
        return self.verdict == FAILS


@dataclass
class Measurement:
    """A number a section shows and never counts: a limit of an explanation, a seed-dependent figure."""
    key: str
    text: str
    value: Optional[float]
    unit: str = ""
    note: str = ""


def claims_table(claims) -> str:
    """Markdown: key, hypothesis, measured value, threshold and why, verdict (holds / FAILS / not measured here)."""
    rows = []
    for c in claims:
        verdict = {HOLDS: "holds", FAILS: "**FAILS**"}.get(c.verdict, f"not measured here ({c.note or 'n/a'})")
        rows.append([f"`{c.key}`", c.text + (f" ({c.note})" if c.note and c.verdict != NOT_MEASURED else ""),
                     shown(c.value, c.unit), f"{c.op} {shown(c.threshold, c.unit)}", c.why, verdict])
    return markdown_table(["key", "hypothesis", "measured", "threshold", "why this threshold", "verdict"], rows,
                          "llrrll")


def measurements_table(measurements) -> str:
    """Markdown: what a section measures beside its hypotheses (no threshold, never counted)."""
    return markdown_table(["measured (not a claim)", "value"],
                          [[m.text + (f" ({m.note})" if m.note else ""), shown(m.value, m.unit)] for m in measurements])


def by_key(items) -> dict:
    return {item.key: item for item in items}


def pick(items, keys) -> list:
    """The items named by keys, in that order (KeyError naming the missing key)."""
    found = by_key(items)
    missing = [k for k in keys if k not in found]
    if missing:
        raise KeyError(f"no claim or measurement {missing[0]!r}")
    return [found[k] for k in keys]


def counts(claims) -> dict:
    """{verdict: how many claims have it}."""
    return {v: sum(c.verdict == v for c in claims) for v in (HOLDS, FAILS, NOT_MEASURED)}


def tally(claims) -> str:
    """'17 of 19 hypotheses hold, 2 FAIL; 3 not measured here': the one count a notebook states."""
    c = counts(claims)
    measured = c[HOLDS] + c[FAILS]
    text = f"{c[HOLDS]} of {measured} hypotheses measured on this model hold"
    text += f", {c[FAILS]} FAIL" if c[FAILS] else ""
    return text + (f"; {c[NOT_MEASURED]} not measured here" if c[NOT_MEASURED] else "")


def describe(claims) -> str:
    """'text (measured)' of each claim, joined by '; '."""
    return "; ".join(f"{c.text} ({shown(c.value, c.unit)})" for c in claims)


def verdict_line(claims) -> str:
    """One line: the rows hold, which FAIL, and which could not be measured here (with the reason)."""
    failing = [c for c in claims if c.fails]
    missing = [c for c in claims if c.verdict == NOT_MEASURED]
    if failing:
        line = "**Verdict: the hypothesis FAILS on this model**; failing: " + describe(failing) + "."
    elif len(missing) == len(claims):
        return "**Verdict: not measured here**: " + "; ".join(sorted({c.note or c.key for c in missing})) + "."
    else:
        line = ("**Verdict: the hypothesis holds on this model** " +
                (f"(all {len(claims)} rows)." if not missing else f"({len(claims) - len(missing)} of {len(claims)} rows "
                                                                  "measured)."))
    if missing:
        line += " Not measured here: " + "; ".join(f"{c.key} ({c.note or 'n/a'})" for c in missing) + "."
    return line


def verdict(claims, keys, measurements=(), measured_keys=()) -> str:
    """Markdown for a section: its claims (named by keys) as a table, the verdict line, then the measurements
    it shows beside them (named by measured_keys)."""
    keys = [keys] if isinstance(keys, str) else keys
    rows = pick(claims, keys)
    parts = [claims_table(rows) + "\n\n" + verdict_line(rows)] if rows else []
    if measured_keys:
        parts.append(measurements_table(pick(measurements, measured_keys)))
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------ claims both tasks make
def accuracy_claims(record: dict) -> list:
    """Right on the suite's fresh uniform lists and on every family: the bar a model that solves the task
    meets (record: shared.measures.correctness)."""
    why = "the bar for a model that solves the task (README): at most 1 error in 1,000 lists"
    return [Claim("accuracy", f"right on {record['uniform lists']:,} fresh uniform lists", record["accuracy"], ">=",
                  BAR_UNIFORM, why, "%"),
            Claim("weakest_family", f"right on every evaluation family, the weakest included "
                  f"({record['weakest family']})", record["weakest accuracy"], ">=", BAR_FAMILY,
                  "the bar for every family (README): at most 1 error in 100 lists", "%")]


def verification_claim(verdict) -> Claim:
    """The verifier's verdict on every input as a hypothesis: the smallest logit margin over all of them, every
    float32 rounding against it, is positive. Refuted: the margin of a confirmed counterexample (negative);
    out of scope (the architecture, or a bound too loose to decide): not measured here, with the reason."""
    value, note = None, f"out of scope: {verdict.reason}"
    if verdict.status == "proved":
        value, note = verdict.float32_margin if verdict.float32_margin is not None else verdict.margin, ""
    elif verdict.status == "refuted":
        value = verdict.margin if verdict.margin is not None and verdict.margin < 0 else -1.0
        example = verdict.counterexamples[0] if verdict.counterexamples else None
        note = f"refuted: e.g. {' '.join(map(str, example[0]))} -> {example[1]}, answer {example[2]}" if example \
            else "refuted"
    return Claim("proved", f"right on every one of the {verdict.inputs:,} inputs, decided from the weights "
                 f"(shared.verify, {verdict.method}): the smallest logit margin over all of them", value, ">", 0.0,
                 "right on every input means a positive margin on every input", note=note)


def faithfulness_claim(results, circuit: str, key: str, note: str = "") -> Claim:
    """From shared.faithfulness.faithfulness_by_family: the circuit recovers the model's loss on every family (the
    one where it recovers least stands for all). results None: not measured here, `note` says why."""
    worst = weakest_family(results) if results else None
    return Claim(key, f"{circuit}: share of the model's loss recovered on every family (all else resampled from "
                 f"the same family; least on {worst or 'n/a'})", results[worst]["loss recovered"] if results else None,
                 ">=", COMPLETE, "'recovers the loss' means all but 1% of it", "%", note=note)


def formation_claim(record: dict) -> Claim:
    """The structure forms no later than the accuracy it supports (record: shared.measures.formation): the
    difference of their formation steps is <= 0. Not measured here without snapshots, when either measure
    barely moves, or when the structure settles only at the last snapshot (it may form later)."""
    s, a, last = record.get("formed structure"), record.get("formed accuracy"), record.get("last snapshot")
    name, accuracy = record.get("structure", "the structure"), record.get("accuracy measure", "its accuracy")
    if record.get("snapshots") is None:
        value, note = None, record.get("snapshots note", "no snapshots for this model")
    elif s is None or a is None:
        value, note = None, f"{name if s is None else accuracy} barely moves over the snapshots"
    elif s == last:
        value, note = None, f"{name} not formed before the last snapshot (step {last})"
    else:
        apart = abs(record["series"]["step"].index(s) - record["series"]["step"].index(a))
        value, note = s - a, f"snapshots of this run: formed at steps {s} and {a}, {apart} snapshot(s) apart"
    return Claim("formation", f"'{name}' forms no later than '{accuracy}': the difference of their formation steps",
                 value, "<=", 0, "'no later' means a difference of at most 0 steps", note=note)


def formation_measurement(record: dict) -> Measurement:
    """What a formation FAIL means: how far the structure had come, from its first value to its last, at the
    snapshot where the accuracy formed (near 1: it sharpened after it already sufficed; far below: the model
    was right some other way first). None where the formation claim is not measured."""
    s, a = record.get("formed structure"), record.get("formed accuracy")
    value = None
    if record.get("snapshots") is not None and None not in (s, a) and s != record["last snapshot"]:
        series = record["series"][record["structure"]]
        value = (series[record["series"]["step"].index(a)] - series[0]) / (series[-1] - series[0])
    return Measurement("formation_at_accuracy", f"how far '{record.get('structure', 'the structure')}' had come "
                       "from its first value to its last when the accuracy formed", value, "%")
