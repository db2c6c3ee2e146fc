"""shared.explore: the view of one list is what the model computes, bad input is one line, and the command line
prints the view for a fixed list."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared import load_checkpoint
from shared.explore import BadList, main, parse, run_on

ROOT = Path(__file__).resolve().parent.parent
NEAR_TIE = [12, 11, 12, 12, 13, 12, 12, 11, 12, 12]  # find_min: the minimum 11 twice, the rest one above


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(ROOT / "find_min/checkpoints/model.pt", task="find_min")


def test_the_view_is_what_the_model_computes(model):
    for values in (NEAR_TIE, [5, 3, 9, 1, 7, 7, 2, 8, 6, 4], "63 0 63 0 63 0 63 0 63 0"):
        view, tokens, _, _ = run_on(model, values)
        logits, cache = model.run_with_cache(tokens)
        assert view.answer == logits[0, -1].argmax().item() and view.truth == tokens[0, :-1].min().item()
        assert torch.allclose(torch.tensor(view.attention["L0H0"]), cache["pattern", 0][0, 0, -1])
        assert view.top[0][0] == view.answer and abs(sum(p for _, p in view.top) - 1) < 0.05
        assert torch.allclose(torch.tensor(view.readings["L0H0 score"]), cache["attn_scores", 0][0, 0, -1])


@pytest.mark.parametrize("values, message", [
    ("", "type 10 values between 0 and 63"),
    ("1 2 3", "this model reads lists of 10 values, got 3"),
    ("1 2 3 4 5 6 7 8 9 99", "99 is outside 0..63 (the values this model reads; 64 is its separator)"),
    ("1 2 3 4 5 6 7 8 9 64", "64 is outside 0..63"),
    ("1 2 3 4 5 6 7 8 9 x", "'x' is not a whole number"),
    ("1 2 3 4 5 6 7 8 9 2.5", "'2.5' is not a whole number"),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, True], "True is not a whole number"),
])
def test_bad_input_is_one_line(model, values, message):
    with pytest.raises(BadList, match=re.escape(message)):
        run_on(model, values)
    assert parse("1, 2,3 4 5 6 7 8 9 10", 10, 64) == list(range(1, 11))


def test_the_command_line_view_of_a_near_tie(capsys):
    run = subprocess.run([sys.executable, "-m", "shared.explore", "find_min", *map(str, NEAR_TIE)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "list: " + " ".join(map(str, NEAR_TIE)) and lines[1] == "model's answer: 11; true answer: 11"
    assert lines[2].startswith("top probabilities: 11: ") and lines[3] == "L0H0: SEP's attention over the positions"
    assert len([line for line in lines if line.startswith("     11 (")]) == 2 and "   SEP (10)" in run.stdout
    for args, message in ((["find_min", "1", "2"], "error: this model reads lists of 10 values, got 2"),
                          (["find_min", "1", "--lists=3"], "error: --lists=3: unknown option; known: --checkpoint=PATH"),
                          (["find_min", "1", "--checkpoint=no/such.pt"], "error: no/such.pt: no such checkpoint file")):
        assert main(args) == 2 and capsys.readouterr().err.strip().startswith(message)  # the same main, in-process
