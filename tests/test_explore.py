"""shared.explore: the view of one list is what the model computes (every head, any explanation beside it), bad
input is one line, the command line lists its tasks and names an unknown one, the panel replaces its view in place,
reads the box after a pause or on Enter and draws a new list on every family choice, and the example lists (README's
and the panel's default) show the committed models' heads doing what the notebooks say."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import COMMITTED, committed_run
from shared import load_checkpoint
from shared.explore import (PLACEHOLDER, BadInput, BadList, Panel, Screen, example, load_explanation, main, parse,
                            run_on, text)
from shared.published import task_names
from shared.tasks import to_tokens

ROOT = Path(__file__).resolve().parent.parent
# The head each committed model's notebook says does the work, and how much of SEP's attention "does" takes there:
# find_min's head selects the minimum ("almost all", 0.9), find_median's later head puts most of it on the median.
SHOWN = {"find_min": ("L0H0", 0.9), "find_median": ("L1H0", 0.5)}


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(ROOT / "find_min/checkpoints/model.pt", task="find_min")


@pytest.fixture(scope="module")
def median_model():
    return load_checkpoint(ROOT / "find_median/checkpoints/model.pt", task="find_median")


# The lists are built for each model's shape, so that a user's retrain with another n, V or head count is tested on
# lists it reads and heads it has.
def shape(model) -> tuple:
    """(n, V): how many values the model reads, and how many values there are."""
    return model.cfg.n_ctx - 1, model.cfg.d_vocab_out


def near_tie(model) -> list:
    """find_min's near tie: the minimum 11 twice, the rest one above it."""
    return ([12, 11, 12, 12, 13, 12, 12, 11] + [12] * shape(model)[0])[:shape(model)[0]]


def head_names(model) -> list:
    return [f"L{layer}H{head}" for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def answer_of(model, values) -> int:
    return model(to_tokens(torch.tensor([values]), shape(model)[1]))[0, -1].argmax().item()


def test_the_view_is_what_the_model_computes(model, median_model):
    n, V = shape(model)
    spread = [12, 47, 3, 30, 58, 21, 40, 9, 33, 5][:shape(median_model)[0]]
    for m, values in ((model, near_tie(model)), (model, ([V - 1, 0] * n)[:n]),
                      (median_model, [v % shape(median_model)[1] for v in spread])):
        view, tokens, _, _ = run_on(m, values)
        logits, cache = m.run_with_cache(tokens)
        assert view.answer == logits[0, -1].argmax().item() == view.top[0][0]
        assert view.truth == sorted(values)[0 if m is model else len(values) // 2]
        probabilities = logits[0, -1].softmax(-1)
        assert all(abs(probabilities[v] - p) < 1e-5 for v, p in view.top)
        for layer in range(m.cfg.n_layers):
            for head in range(m.cfg.n_heads):
                name = f"L{layer}H{head}"
                assert torch.allclose(torch.tensor(view.attention[name]), cache["pattern", layer][0, head, -1])
                assert torch.allclose(torch.tensor(view.scores[name]), cache["attn_scores", layer][0, head, -1])
        assert list(view.attention) == list(view.scores) == head_names(m) and view.head is None


class Uniform:
    """An explanation that attends evenly and always answers 0: it parts from the model where the model does."""

    def __init__(self, V: int):
        self.V = V

    def attention(self, tokens):
        return torch.full(tokens.shape, 1 / tokens.shape[1])

    def logits(self, tokens):
        return torch.nn.functional.one_hot(torch.zeros(len(tokens), dtype=torch.long), self.V).float()


def test_an_explanation_is_shown_beside_its_head_and_marked_where_it_differs(model):
    values, (n, V) = near_tie(model), shape(model)
    view = run_on(model, values, explanation=Uniform(V), head=(0, 0))[0]
    said = view.explained
    assert said.answer == 0 and said.head == view.head == "L0H0"
    assert said.attention == pytest.approx([1 / (n + 1)] * (n + 1))
    assert said.differs(view) == [abs(a - 1 / (n + 1)) > 0.1 for a in view.attention["L0H0"]]
    shown = text(view)
    assert "L0H0: SEP's attention over the positions (highlighted)" in shown
    assert ("explanation: answers 0 like the model" if view.answer == 0 else
            f"explanation: answers 0, NOT the model's {view.answer}") in shown
    assert ("<- differs" in shown) == any(said.differs(view))
    nearest = run_on(model, values, explanation=Uniform(V))[0]
    assert nearest.explained.head == min(head_names(model), key=lambda name: nearest.explained.distance(nearest, name))
    with pytest.raises(TypeError, match="an explanation is an object with .logits"):
        run_on(model, values, explanation={"layer": 0, "head": 0})  # the old notebook record is refused in one line


def test_bad_input_is_one_line(model):
    n, V = shape(model)
    below = list(range(1, n))  # n - 1 values that every model reads
    for values, message in (("", f"type {n} values between 0 and {V - 1}"),
                            ("1 2 3", f"this model reads lists of {n} values, got 3"),
                            ([*below, V + 35], f"{V + 35} is outside 0..{V - 1} (the values this model reads; {V} is "
                                               "its separator)"),
                            ([*below, V], f"{V} is outside 0..{V - 1}"),
                            (" ".join(map(str, below)) + " x", "'x' is not a whole number"),
                            (" ".join(map(str, below)) + " 2.5", "'2.5' is not a whole number"),
                            ([*below, True], "True is not a whole number")):
        with pytest.raises(BadList, match=re.escape(message)):
            run_on(model, values)
    assert parse("1, 2,3 4 5 6 7 8 9 10", 10, 64) == list(range(1, 11))


def test_a_head_the_model_lacks_is_one_line(model):
    layers, heads = model.cfg.n_layers, model.cfg.n_heads
    for head in (f"L{layers}H0", (0, heads), "MLP 0", "x"):
        with pytest.raises(BadInput, match=re.escape(f"{head!r} is no head of this model (its heads: "
                                                     f"{', '.join(head_names(model))})")):
            run_on(model, near_tie(model), head=head)


def test_the_command_line_view_of_a_near_tie(model, capsys):
    values, n = near_tie(model), shape(model)[0]
    run = subprocess.run([sys.executable, "-m", "shared.explore", "find_min", *map(str, values)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines, answer = run.stdout.splitlines(), answer_of(model, values)
    assert lines[0] == "list: " + " ".join(map(str, values)) and lines[1].startswith(f"model's answer: {answer}; "
                                                                                      "true answer: 11")
    assert lines[2].startswith(f"top probabilities: {answer}: ")
    assert lines[3] == "L0H0: SEP's attention over the positions"
    assert len([line for line in lines if line.startswith("     11 (")]) == 2 * model.cfg.n_heads  # each head's bars
    assert f"   SEP ({n})" in run.stdout
    assert "scores from SEP before the softmax:" in lines and "explanation" not in run.stdout  # find_min has none
    absent = f"L{model.cfg.n_layers}H0"
    for args, message in ((["find_min", "1", "2"], f"error: this model reads lists of {n} values, got 2"),
                          (["find_max", "1", "2"], f"error: unknown task find_max (tasks: {', '.join(task_names())})"),
                          (["find_min", "1", "--lists=3"],
                           "error: --lists=3: unknown option; known: --checkpoint=PATH, --head=L1H0"),
                          (["find_min", *map(str, values), f"--head={absent}"],
                           f"error: '{absent}' is no head of this model"),
                          (["find_min", "1", "--checkpoint=no/such.pt"], "error: no/such.pt: no such checkpoint file")):
        assert main(args) == 2 and capsys.readouterr().err.strip().startswith(message)  # the same main, in-process
    assert main(["--help"]) == 0 and f"one of: {', '.join(task_names())}" in capsys.readouterr().out


def test_the_command_line_finds_the_saved_explanation(median_model, capsys):
    checkpoint = ROOT / "find_median/checkpoints/model.pt"
    assert load_explanation(median_model, "find_min", checkpoint) is None  # no find_min/explanation.py
    if load_explanation(median_model, "find_median", checkpoint) is None:
        pytest.skip("skipped: no explanation saved for this find_median run (python find_median/explanation.py --save)")
    (n, V), head = shape(median_model), head_names(median_model)[-1]
    values = [str((12 + 35 * i) % V) for i in range(n)]  # spread over the range, at the checkpoint's n and V
    assert main(["find_median", *values, f"--head={head}"]) == 0
    out = capsys.readouterr().out
    assert f"{head}: SEP's attention over the positions (highlighted)" in out and "explanation: answers " in out


class Later:
    """A scheduler the test fires by hand: what the panel's pause would run."""

    def __init__(self):
        self.waiting = []

    def __call__(self, seconds, callback):
        handle = type("Handle", (), {"cancelled": False, "cancel": lambda h: setattr(h, "cancelled", True)})()
        self.waiting.append((handle, callback))
        return handle

    def fire(self):
        due, self.waiting = [c for h, c in self.waiting if not h.cancelled], []
        for callback in due:
            callback()


class Drawn(list):
    """A screen that keeps every view it was asked to draw."""

    def draw(self, view):
        self.append(view)


PI, E = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]  # the family's two lists (their first n)


def spaced(values) -> str:
    return " ".join(map(str, values))


@pytest.fixture
def live(model):
    screen, later, (n, V) = Drawn(), Later(), shape(model)
    tokens = torch.tensor([PI[:n] + [V], E[:n] + [V]])
    return Panel(model, near_tie(model), {"two lists": (tokens, None)}, screen=screen, later=later), screen, later


def test_the_panel_reads_the_box_after_a_pause_or_on_enter_never_per_keystroke(live, model):
    panel, screen, later = live
    n = shape(model)[0]
    countdown, ascending = list(range(n - 1, -1, -1)), list(range(1, n + 1))
    for end in range(1, len(spaced(countdown)) + 1):
        panel.box.value = spaced(countdown)[:end]  # typing: half-typed lists are not read
    assert screen == [] and "error" not in panel.status.value and len(later.waiting) == len(spaced(countdown))
    later.fire()  # the pause: only the last keystroke's timer is still live
    assert [v.values for v in screen] == [countdown]
    panel.box.value = spaced(ascending)
    panel.box._handle_custom_msg({"event": "submit"}, [])  # Enter: at once
    assert screen[-1].values == ascending and len(screen) == 2
    later.fire()
    assert len(screen) == 2  # the pause after Enter redraws nothing
    panel.box.value = "1 2 3"
    panel.box._handle_custom_msg({"event": "submit"}, [])
    assert len(screen) == 2 and f"error: this model reads lists of {n} values, got 3" in panel.status.value
    assert f"still of {spaced(ascending)}" in panel.status.value


def test_every_family_choice_draws_a_new_list(live, model):
    panel, screen, later = live
    n = shape(model)[0]
    panel.family.value = "two lists"
    panel.another.click()  # the same family again
    panel.another.click()
    assert [v.values for v in screen] == [PI[:n], E[:n], PI[:n]]
    assert panel.box.value == spaced(PI[:n]) and "drawn from two lists" in panel.status.value
    later.fire()
    assert len(screen) == 3  # a drawn list is shown once, not again after the pause
    panel.box.value = spaced([0] * n)  # typed by hand: no longer the family's draw
    assert panel.family.value == PLACEHOLDER and panel.another.disabled
    panel.family.value = "two lists"  # so choosing the same family again draws again
    assert screen[-1].values == E[:n] and len(screen) == 4


def test_the_screen_replaces_its_view_in_place(model, monkeypatch):
    import IPython.display
    shown, updated = [], []

    class Handle:
        def update(self, output):
            updated.append(output)

    monkeypatch.setattr(IPython.display, "display", lambda output, display_id=False: shown.append(output) or Handle())
    screen, n = Screen(), shape(model)[0]
    for values in (near_tie(model), list(range(n - 1, -1, -1)), list(range(1, n + 1))):
        screen.draw(run_on(model, values)[0])
    assert [type(o).__name__ for o in shown] == ["Image", "Markdown"]  # displayed once, in one place
    assert [type(o).__name__ for o in updated] == ["Image", "Markdown"] * 2
    assert f"**{answer_of(model, list(range(1, n + 1)))}** is the model's" in updated[-1].data


@pytest.mark.parametrize("task", sorted(SHOWN))
def test_the_example_lists_show_the_head_doing_what_the_notebook_says(task):
    """README's example list and the panel's default: on the committed run (by id) the head the notebook examines
    puts most of SEP's attention on the answer (find_min: almost all), as the text around them says."""
    if not committed_run(task):
        pytest.skip(f"skipped: {task}'s checkpoint is not the committed run {COMMITTED[task][0]}; the lists were "
                    "chosen on that one (the panel's default is found anew on any run)")
    model = load_checkpoint(ROOT / task / "checkpoints/model.pt", task=task)
    head, share = SHOWN[task]
    readme = re.search(rf"python -m shared\.explore {task} ([\d ]+)", (ROOT / "README.md").read_text())[1].split()
    default, note = example(model, head=head)
    assert note.startswith("the first of 64 uniform lists")
    for values in (readme, default):
        view = run_on(model, values, head=head)[0]
        on_answer = sum(a for a, v in zip(view.attention[head], view.values) if v == view.truth)
        assert view.answer == view.truth and on_answer >= share, (values, on_answer)
