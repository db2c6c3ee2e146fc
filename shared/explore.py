"""Try your own list: run a model on one list and see what each head does, in a notebook panel or a terminal.

    python -m shared.explore find_min 5 3 9 1 7 7 2 8 6 4              # the task's committed checkpoint
    python -m shared.explore find_median 30 31 29 30 31 29 30 --checkpoint=find_median/checkpoints/model.pt

`run_on(model, values)` checks the list (its length, integers, values in 0..V-1) and returns a View: the answer,
the true answer, the top probabilities, every head's attention from SEP, and the task's own readings (each task's
`analysis.explore`, e.g. find_min's QK score per key, find_median's average, MLP 0's firing neurons, the selecting
head's score and what the explanation predicts). The panel (`panel`) and the command line both call it; bad input is
a one-line message (`BadList`), never a traceback.
"""
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .components import head_name
from .tasks import task_of, to_tokens

TOP = 5  # the top probabilities shown


class BadList(ValueError):
    """A list the model cannot read, with the one-line reason."""


@dataclass
class View:
    values: list
    answer: int  # the model's
    truth: int  # the task's answer
    top: list  # [(value, probability)] the TOP most likely answers
    attention: dict  # {head name: [SEP's attention on each position, SEP last]}
    readings: dict = field(default_factory=dict)  # {label: [one number per key position]} from the task
    lines: list = field(default_factory=list)  # the task's own sentences about this list


def parse(text, n: int, V: int) -> list:
    """The values of a list typed as '3 5 7' or '3, 5, 7' (or given as ints), checked: n integers in 0..V-1."""
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    if not items:
        raise BadList(f"type {n} values between 0 and {V - 1}, e.g. {' '.join(str(i % V) for i in range(n))}")
    values = []
    for item in items:
        if isinstance(item, bool) or not (isinstance(item, int) or str(item).strip().lstrip("+-").isdigit()):
            raise BadList(f"{item!r} is not a whole number: type {n} values between 0 and {V - 1}")
        value = int(item)
        if not 0 <= value < V:
            raise BadList(f"{value} is outside 0..{V - 1} (the values this model reads; {V} is its separator)")
        values.append(value)
    if len(values) != n:
        raise BadList(f"this model reads lists of {n} values, got {len(values)}")
    return values


@torch.no_grad()
def run_on(model, values, task=None, context=None):
    """(View, tokens, logits, cache) of the model on one list (text or ints), checked first (BadList). task: the
    model's ListTask, for the true answer (default: the task folder the checkpoint names) and its readings;
    context: what the task's readings may reuse (e.g. a notebook's record: the head it examines, a fitted program)."""
    n, V = model.cfg.n_ctx - 1, model.cfg.d_vocab_out
    values = parse(values, n, V)
    try:
        task = task or task_of(model)
    except ValueError as error:
        raise BadList(str(error)) from None
    tokens = to_tokens(torch.tensor([values]), V)
    logits, cache = model.run_with_cache(tokens)
    probabilities = logits[0, -1].softmax(-1)
    top = probabilities.topk(min(TOP, V))
    view = View(values, logits[0, -1].argmax().item(), task.answer(tokens[:, :-1]).item(),
                list(zip(top.indices.tolist(), top.values.tolist())),
                {head_name(l, h): cache["pattern", l][0, h, -1].tolist() for l in range(model.cfg.n_layers)
                 for h in range(model.cfg.n_heads)})
    readings = getattr(importlib.import_module(f"{task.name}.analysis"), "explore", None)
    if readings is not None:
        readings(model, tokens, cache, view, context or {})
    return view, tokens, logits, cache


def position_labels(view: View) -> list:
    """'value (position)' for each key, then 'SEP (n)': how every view labels the positions."""
    return [f"{v} ({i})" for i, v in enumerate(view.values)] + [f"SEP ({len(view.values)})"]


def bar(share: float, width: int = 20) -> str:
    return "#" * round(share * width)


def text(view: View) -> str:
    """The view for a terminal: the answers, the top probabilities, and per head a labelled bar per position."""
    labels = position_labels(view)
    lines = [f"list: {' '.join(map(str, view.values))}",
             f"model's answer: {view.answer}; true answer: {view.truth}" + ("" if view.answer == view.truth else
                                                                            "  <- the model is wrong here"),
             "top probabilities: " + ", ".join(f"{v}: {p:.3f}" for v, p in view.top)]
    for name, row in view.attention.items():
        lines.append(f"{name}: SEP's attention over the positions")
        lines += [f"  {label:>9} {share:6.3f} {bar(share)}" for label, share in zip(labels, row)]
    for name, row in view.readings.items():
        lines.append(f"{name}: " + ", ".join(f"{label.split()[0]}: {x:.2f}" for label, x in zip(labels, row)))
    return "\n".join(lines + view.lines)


def figure(view: View, title: str = ""):
    """The view as a figure: one panel per head, SEP's attention over the positions, labelled 'value (position)'."""
    import matplotlib.pyplot as plt
    labels = position_labels(view)
    fig, axes = plt.subplots(1, len(view.attention), figsize=(3.2 * len(view.attention) + 1, 2.8), squeeze=False,
                             constrained_layout=True)
    for ax, (name, row) in zip(axes[0], view.attention.items()):
        ax.bar(range(len(row)), row, color=["C3" if (i < len(view.values) and view.values[i] == view.answer) else "C0"
                                            for i in range(len(row))])
        ax.set_xticks(range(len(row)), labels, rotation=90, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: SEP's attention", fontsize=9)
    axes[0, 0].set_ylabel("attention (red: the model's answer)")
    fig.suptitle(title or f"{' '.join(map(str, view.values))} -> {view.answer} (true {view.truth})", fontsize=10)
    return fig


def show(view: View):
    """Display a view in a notebook: its figure, then its answers, probabilities and the task's readings."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display
    from .tables import markdown_table
    fig = figure(view)
    display(fig)
    plt.close(fig)
    labels = position_labels(view)
    table = markdown_table(["", *labels], [[name, *(f"{x:.2f}" for x in row)] for name, row in
                                           {**view.attention, **view.readings}.items()]) if view.readings else ""
    display(Markdown("\n\n".join([
        f"**{view.answer}** is the model's answer, {view.truth} the true one" +
        ("" if view.answer == view.truth else " (**the model is wrong here**)") + "; top probabilities: " +
        ", ".join(f"{v}: {p:.3f}" for v, p in view.top), table, "\n".join(f"- {line}" for line in view.lines)])))


def panel(model, default, families=None, task=None, context=None):
    """The interactive panel: a text box for the list, a 'draw from family' choice, and the view of whatever list
    they hold, updated as it changes; bad input is one line in the panel. Without a widget frontend (headless
    execution, a static renderer) the default list's view, shown first, is what the notebook keeps."""
    import ipywidgets as widgets
    from IPython.display import display
    show(run_on(model, default, task, context)[0])
    box = widgets.Text(value=" ".join(map(str, default)), description="list:", layout=widgets.Layout(width="60%"))
    draw = widgets.Dropdown(options=["(type a list)"] + list(families or {}), description="draw from:")
    out = widgets.Output()
    picks = {name: iter(tokens[:, :-1].tolist()) for name, (tokens, _) in (families or {}).items()}

    def update(_=None):
        out.clear_output(wait=True)
        with out:
            try:
                show(run_on(model, box.value, task, context)[0])
            except BadList as error:
                print(f"error: {error}")

    def drawn(change):
        if change["new"] in picks:
            box.value = " ".join(map(str, next(picks[change["new"]])))
    box.observe(update, names="value")
    draw.observe(drawn, names="value")
    display(widgets.VBox([widgets.HBox([box, draw]), out]))


def main(argv=None) -> int:
    from .checkpoint import CheckpointError, load_checkpoint
    from .published import ROOT
    args = sys.argv[1:] if argv is None else argv
    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    rest = [a for a in args if not a.startswith("--")]
    if not rest or "help" in options or "-h" in args or "--help" in args:
        print("usage: python -m shared.explore TASK v1 v2 ... vn [--checkpoint=PATH]", file=sys.stderr)
        return 2
    unknown = [a for a in args if a.startswith("--") and a.split("=", 1)[0] != "--checkpoint"]
    if unknown:
        print(f"error: {unknown[0]}: unknown option; known: --checkpoint=PATH", file=sys.stderr)
        return 2
    task_name, values = rest[0], rest[1:]
    path = Path(options.get("checkpoint", ROOT / task_name / "checkpoints/model.pt"))
    try:
        model = load_checkpoint(path, task=task_name)
        context = getattr(importlib.import_module(f"{task_name}.analysis"), "explore_context", lambda m, p: {})
        print(text(run_on(model, values, context=context(model, path))[0]))
    except (BadList, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the task folders, from anywhere
    raise SystemExit(main())
