"""What several test modules share: the run each committed checkpoint is, and the verdicts its notebook documents."""
import re
from pathlib import Path

from shared import load_checkpoint
from shared.hypotheses import FAILS, NOT_MEASURED

ROOT = Path(__file__).resolve().parent.parent

# The run each committed checkpoint is, and every hypothesis of its notebook that does not hold on it (the rest
# hold): a retrain is another run, on which the tests check only that each verdict follows from its own value.
COMMITTED = {
    "find_min": ("93560939929486fc", {}),
    "find_median": ("defd844ce92c6218", {"program_families": FAILS, "program_mistakes": FAILS,
                                         "formation": NOT_MEASURED}),
}


def run_of(task: str) -> str:
    """The run id of the task's checkpoint as it is now (committed, or retrained by the user)."""
    return load_checkpoint(ROOT / task / "checkpoints/model.pt").metadata.get("run_id")


def committed_run(task: str) -> bool:
    """Whether the task's checkpoint is still the run its expected verdicts document."""
    return run_of(task) == COMMITTED[task][0]


def try_it_block() -> str:
    """README's Python try-it block; the test skips, saying why, where find_min's checkpoint was retrained to read
    lists of another length or range than the block's (on such a model the block stops at a one-line error)."""
    import pytest
    block = re.search(r"## Try it.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    values = [int(v) for v in re.search(r"run_on\(model, \[([\d, ]+)\]", block)[1].split(",")]
    cfg = load_checkpoint(ROOT / "find_min/checkpoints/model.pt").cfg
    n, V = cfg.n_ctx - 1, cfg.d_vocab_out
    if len(values) != n or max(values) >= V:
        pytest.skip(f"skipped: README's list has {len(values)} values up to {max(values)}; find_min's checkpoint "
                    f"reads {n} values below {V} (retrained with another n or V)")
    return block


def try_it_answers(task: str) -> str:
    """What the try-it block prints on the task's checkpoint: the model's answer is known only on the committed run."""
    return "model's answer: 1; true answer: 1" if committed_run(task) else "; true answer: 1"


def documented(task: str, record: dict) -> dict:
    """{key: verdict} the committed run must show: every hypothesis holds but those COMMITTED lists."""
    return {h["key"]: COMMITTED[task][1].get(h["key"], "holds") for h in record["hypotheses"]}


def verdicts(record: dict) -> dict:
    return {h["key"]: h["verdict"] for h in record["hypotheses"]}
