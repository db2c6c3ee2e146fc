"""What several test modules share: the committed checkpoints' runs and the verdicts their notebooks document, and
how a notebook's verdict rows are read back from its output."""
import re
from pathlib import Path

from shared import load_checkpoint
from shared.claims import COMPARE, FAILS, HOLDS, NOT_MEASURED

ROOT = Path(__file__).resolve().parent.parent

# The run each committed checkpoint is, and every hypothesis of its notebook that does not hold on it (the rest
# hold): a retrain is another run, on which the tests check only that each verdict follows from its own value.
COMMITTED = {
    "find_min": ("93560939929486fc", {}),
    "find_median": ("defd844ce92c6218", {"program_families": FAILS, "program_mistakes": FAILS,
                                         "formation": NOT_MEASURED}),
}


def committed_run(task: str) -> bool:
    """Whether the task's checkpoint is still the run its expected verdicts document."""
    return load_checkpoint(ROOT / task / "checkpoints/model.pt").metadata.get("run_id") == COMMITTED[task][0]


def text_of(outputs) -> str:
    return "\n".join(o.get("data", {}).get("text/markdown", "") + o.get("text", "") for o in outputs)


ROW = re.compile(r"^\| `(\w+)` \| (.*) \| (\S+) \| (>=|>|<=|<) (\S+) \| .* \| (holds|\*\*FAILS\*\*|not measured here.*) \|$")


def number(shown: str):
    """A number as claims_table shows it ('99.90%', '1,054', '0.767') back as a float; None for 'n/a'."""
    if shown == "n/a":
        return None
    return float(shown[:-1].replace(",", "")) / 100 if shown.endswith("%") else float(shown.replace(",", ""))


def verdict_rows(text: str) -> dict:
    """{key: (value, op, threshold, verdict)} of every claims-table row in a notebook's output (the first table
    that names a key wins: the opening one)."""
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match and match[1] not in rows:
            key, _, value, op, threshold, verdict = match.groups()
            rows[key] = (number(value), op, number(threshold), {"holds": HOLDS, "**FAILS**": FAILS}.get(verdict, NOT_MEASURED))
    return rows


def consistent(rows: dict) -> list:
    """The rows whose shown verdict does not follow from their shown value and threshold (a value shown equal to
    its threshold may go either way: the display rounds)."""
    wrong = []
    for key, (value, op, threshold, verdict) in rows.items():
        expected = NOT_MEASURED if value is None else HOLDS if COMPARE[op](value, threshold) else FAILS
        if expected != verdict and not (value is not None and value == threshold and verdict != NOT_MEASURED):
            wrong.append(key)
    return wrong
