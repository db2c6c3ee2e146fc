"""Try your own list: run a model on one list and see what each head does, in a notebook panel or a terminal.

    python -m shared.explore --help                                    # the tasks and the options
    python -m shared.explore find_min 5 3 9 1 7 7 2 8 6 4              # the task's committed checkpoint
    python -m shared.explore find_median 12 47 3 30 58 21 40 --head=L1H0 --checkpoint=find_median/checkpoints/model.pt

`run_on(model, values, task, explanation, head)` checks the list (its length, integers, values in 0..V-1) and returns
a View, the same for every task: the model's answer, the true answer, the top probabilities, every head's attention
from SEP and its scores from SEP before the softmax, one per key; and where an explanation is given (any object with
`.logits(tokens)` and `.attention(tokens)`, e.g. a program that stands in for the model) its answer and attention
beside the model's, marked where they differ. The command line finds a task's explanation by convention:
`<task>/explanation.py`'s `load_saved(model, checkpoint)`, which returns one or None. The panel (`panel`) and the
command line both call `run_on`; bad input is a one-line message (`BadInput`), never a traceback.
"""
import asyncio
import html
import importlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .circuits import attention_distance
from .components import head_name, parse as parse_component
from .tasks import answer_positions, task_of, to_tokens, uniform_values

TOP = 5  # the top probabilities shown
DIFFERS = 0.1  # an explanation's attention is marked where it is this far from the head's (a display mark, no claim)
MOST = 0.5  # 'most of the attention' means more than half
PAUSE = 0.8  # seconds without typing before the panel reads the box (Enter reads it at once)
PLACEHOLDER = "(type a list)"  # the family choice that draws nothing
HINT = "type a list and press Enter (or pause), or draw one from a family"  # the panel's status when all is well


class BadInput(ValueError):
    """Input the view cannot read (a list, a head's name), with the one-line reason."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback: one line, as on the command line
        return [f"{type(self).__name__}: {self}"]


class BadList(BadInput):
    """A list the model cannot read."""


@dataclass
class Explained:
    """What an explanation says on the list, beside the model's head it is compared with."""
    answer: int
    attention: list  # its SEP attention over the positions, SEP last
    head: Optional[str]  # the model's head it describes: the highlighted one, else the one nearest its attention

    def distance(self, view, head: str = None) -> float:
        """Total variation between its attention and a head's (default: the one it is compared with)."""
        return attention_distance(torch.tensor([self.attention]), torch.tensor([view.attention[head or self.head]]))

    def differs(self, view) -> list:
        """For each position, whether the explanation's attention is more than DIFFERS from the head's."""
        return [abs(a - b) > DIFFERS for a, b in zip(self.attention, view.attention[self.head])]


@dataclass
class View:
    values: list
    answer: int  # the model's
    truth: int  # the task's answer
    top: list  # [(value, probability)] the TOP most likely answers
    attention: dict  # {head name: [SEP's attention on each position, SEP last]}
    scores: dict  # {head name: [SEP's score for each position before the softmax, SEP last]}
    head: Optional[str] = None  # the highlighted head
    explained: Optional[Explained] = None
    note: str = ""  # how the list was had, when that matters (the panel's default)


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


def head_of(model, head) -> Optional[str]:
    """The name of a head given as 'L1H0' or (1, 0), checked against the model (None stays None)."""
    if head is None:
        return None
    try:
        layer, index = parse_component(head) if isinstance(head, str) else map(int, head)
    except (TypeError, ValueError):
        layer, index = None, None
    if index is None or not (0 <= layer < model.cfg.n_layers and 0 <= index < model.cfg.n_heads):
        heads = ", ".join(head_name(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads))
        raise BadInput(f"{head!r} is no head of this model (its heads: {heads})")
    return head_name(layer, index)


def checked_explanation(explanation):
    if explanation is not None and not all(callable(getattr(explanation, m, None)) for m in ("logits", "attention")):
        raise TypeError(f"an explanation is an object with .logits(tokens) and .attention(tokens), got "
                        f"{type(explanation).__name__}")
    return explanation


def task_for(model, task):
    try:
        return task or task_of(model)
    except ValueError as error:
        raise BadInput(str(error)) from None


@torch.no_grad()
def run_on(model, values, task=None, explanation=None, head=None):
    """(View, tokens, logits, cache) of the model on one list (text or ints), checked first (BadList). task: the
    model's ListTask, for the true answer (default: the task folder the checkpoint names); explanation: an object
    with .logits(tokens) and .attention(tokens) to show beside the model; head: the head to highlight ('L1H0')."""
    n, V = model.cfg.n_ctx - 1, model.cfg.d_vocab_out
    values, task = parse(values, n, V), task_for(model, task)
    highlighted, explanation = head_of(model, head), checked_explanation(explanation)
    tokens = to_tokens(torch.tensor([values]), V)
    logits, cache = model.run_with_cache(tokens.to(next(model.parameters()).device))
    probabilities = logits[0, -1].softmax(-1)
    top = probabilities.topk(min(TOP, V))
    heads = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    view = View(values, logits[0, -1].argmax().item(), task.answer(tokens[:, :-1]).item(),
                list(zip(top.indices.tolist(), top.values.tolist())),
                {head_name(l, h): cache["pattern", l][0, h, -1].tolist() for l, h in heads},
                {head_name(l, h): cache["attn_scores", l][0, h, -1].tolist() for l, h in heads}, highlighted)
    if explanation is not None:
        view.explained = explain(explanation, tokens, view)
    return view, tokens, logits, cache


def explain(explanation, tokens, view: View) -> Explained:
    """The explanation's answer and attention on the list, compared with the highlighted head, else with the head
    whose attention is nearest its own (total variation)."""
    said = Explained(explanation.logits(tokens)[0].argmax().item(), explanation.attention(tokens)[0].tolist(),
                     view.head)
    said.head = said.head or min(view.attention, key=lambda name: said.distance(view, name))
    return said


@torch.no_grad()
def example(model, task=None, head=None, lists: int = 64, seed: int = 0) -> tuple:
    """(values, note): a list on which the figure shows what the head is there to show: the first of `lists`
    uniform lists (seeded) that the model answers right and on which the head (given, else whichever is most on
    the answer) puts most of SEP's attention on the answer; the first list, saying so, when none does."""
    task, highlighted = task_for(model, task), head_of(model, head)
    values = uniform_values(lists, model.cfg.n_ctx - 1, model.cfg.d_vocab_out, torch.Generator().manual_seed(seed))
    tokens = to_tokens(values, model.cfg.d_vocab_out)
    truth = task.answer(values)
    logits, cache = model.run_with_cache(tokens.to(next(model.parameters()).device))
    on_answer = torch.stack([(cache["pattern", l][:, h, -1, :-1].cpu() * answer_positions(tokens, truth)).sum(-1)
                             for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)], 1)
    if highlighted is not None:
        layer, index = parse_component(highlighted)
        on_answer = on_answer[:, [layer * model.cfg.n_heads + index]]
    whose = highlighted or "a head"
    shows = (on_answer.max(1).values > MOST) & (logits[:, -1].argmax(-1).cpu() == truth)
    if not shows.any():
        return values[0].tolist(), (f"none of {lists} uniform lists (seed {seed}) has {whose} putting most of SEP's "
                                    "attention on the answer with the model right: the first is shown")
    return values[shows.nonzero()[0, 0]].tolist(), (f"the first of {lists} uniform lists (seed {seed}) on which "
                                                    f"{whose} puts most of SEP's attention on the answer")


def position_labels(view: View) -> list:
    """'value (position)' for each key, then 'SEP (n)': how every view labels the positions."""
    return [f"{v} ({i})" for i, v in enumerate(view.values)] + [f"SEP ({len(view.values)})"]


def bar(share: float, width: int = 20) -> str:
    return "#" * round(share * width)


def answer_line(view: View) -> str:
    return f"model's answer: {view.answer}; true answer: {view.truth}" + (
        "" if view.answer == view.truth else "  <- the model is wrong here")


def explanation_line(view: View) -> str:
    said = view.explained
    return (f"explanation: answers {said.answer}" + (" like the model" if said.answer == view.answer else
                                                     f", NOT the model's {view.answer}") +
            f"; its attention is {said.distance(view):.2f} from {said.head}'s (total variation)")


def text(view: View) -> str:
    """The view for a terminal: the answers, the top probabilities, per head a labelled bar per position and its
    scores, and the explanation's answer and attention beside its head's ('<- differs' where they part)."""
    labels = position_labels(view)
    lines = [f"list: {' '.join(map(str, view.values))}", answer_line(view),
             "top probabilities: " + ", ".join(f"{v}: {p:.3f}" for v, p in view.top)]
    for name, row in view.attention.items():
        lines.append(f"{name}: SEP's attention over the positions" + (" (highlighted)" if name == view.head else ""))
        lines += [f"  {label:>9} {share:6.3f} {bar(share)}" for label, share in zip(labels, row)]
    lines.append("scores from SEP before the softmax:")
    for name, row in view.scores.items():
        lines.append(f"  {name}: " + ", ".join(f"{label.split()[0]}: {x:.2f}" for label, x in zip(labels, row)))
    if view.explained:
        said = view.explained
        lines += [explanation_line(view), f"  {'position':>9} {'expl.':>6} {said.head:>6}"]
        lines += [f"  {label:>9} {a:6.3f} {b:6.3f}" + ("  <- differs" if differs else "") for label, a, b, differs in
                  zip(labels, said.attention, view.attention[said.head], said.differs(view))]
    return "\n".join(lines + ([view.note] if view.note else []))


def figure(view: View, title: str = ""):
    """The view as a figure: one panel per head (layers in rows), SEP's attention over the positions labelled
    'value (position)', the answer's positions in red, the uniform share 1/(n+1) dashed, the explanation's attention
    as black ticks on its head's panel. A matplotlib Figure outside pyplot (a panel redraws it; nothing piles up)."""
    from matplotlib.figure import Figure
    layers = len({parse_component(name)[0] for name in view.attention})
    per_layer = len(view.attention) // layers
    fig = Figure(figsize=(min(max(4.2 * per_layer, 6.0), 8.5), 2.6 * layers + 1.1), layout="constrained")
    axes = fig.subplots(layers, per_layer, squeeze=False, sharey=True)
    for ax, (name, row) in zip(axes.flat, view.attention.items()):
        attention_bars(ax, view, name, row)
    legend = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=1 if per_layer == 1 else 2, fontsize=9)
    fig.suptitle(title or f"{' '.join(map(str, view.values))}  ->  {view.answer} (true {view.truth})", fontsize=11)
    return fig


def attention_bars(ax, view: View, name: str, row: list):
    positions = range(len(row))
    ax.bar(positions, row, color=["C3" if i < len(view.values) and view.values[i] == view.truth else "C0"
                                  for i in positions], label="SEP's attention (red: the true answer)")
    ax.axhline(1 / len(row), color="grey", ls="--", lw=1, label=f"uniform, 1/{len(row)}")
    if view.explained and view.explained.head == name:
        ax.scatter(positions, view.explained.attention, marker="_", s=250, color="black", zorder=3,
                   label="the explanation's attention")
    ax.set_xticks(positions, position_labels(view), rotation=90, fontsize=9)
    ax.tick_params(axis="y", labelsize=9)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("attention", fontsize=10)
    ax.set_title(f"{name}: SEP's attention" + (" (highlighted)" if name == view.head else ""), fontsize=10,
                 fontweight="bold" if name == view.head else "normal")


def markdown(view: View) -> str:
    """The view's words under its figure: the answers and top probabilities, a table of every head's attention
    and scores per position, the explanation's row (bold where it parts from its head) and its answer."""
    from .tables import markdown_table
    labels = position_labels(view)
    rows = [[f"{name} attention", *(f"{x:.2f}" for x in row)] for name, row in view.attention.items()]
    rows += [[f"{name} score", *(f"{x:.2f}" for x in row)] for name, row in view.scores.items()]
    lines = [f"**{view.answer}** is the model's answer, {view.truth} the true one" +
             ("" if view.answer == view.truth else " (**the model is wrong here**)") + "; top probabilities: " +
             ", ".join(f"{v}: {p:.3f}" for v, p in view.top)]
    if view.explained:
        said = view.explained
        rows.append(["explanation attention", *(f"**{a:.2f}**" if differs else f"{a:.2f}" for a, differs in
                                                 zip(said.attention, said.differs(view)))])
        lines.append(explanation_line(view).replace("NOT", "**not**") +
                     f" (bold: more than {DIFFERS} apart at that position)")
    table = markdown_table(["", *labels], rows)
    return "\n\n".join(lines[:1] + [table] + lines[1:] + ([view.note] if view.note else []))


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def show(view: View):
    """Display a view in a notebook: its figure, then its words (`markdown`)."""
    from IPython.display import Image, Markdown, display
    display(Image(png(figure(view))), Markdown(markdown(view)))


class Screen:
    """Where the panel draws: the view's figure and words as two notebook outputs, replaced in place (by display
    id) with each new view, so the newest list's view stays where the first one was; a static renderer (the
    notebook as committed, headless execution) keeps the first."""

    def __init__(self):
        self.handles = None

    def draw(self, view: View):
        from IPython.display import Image, Markdown, display
        outputs = Image(png(figure(view))), Markdown(markdown(view))
        if self.handles is None or None in self.handles:  # the first view (or no notebook: displayed anew)
            self.handles = [display(output, display_id=True) for output in outputs]
        else:
            for handle, output in zip(self.handles, outputs):
                handle.update(output)


def call_later(seconds: float, callback):
    """Run callback after `seconds` on the kernel's event loop (returns a handle with .cancel()); at once where no
    loop runs (a plain Python session)."""
    try:
        return asyncio.get_running_loop().call_later(seconds, callback)
    except RuntimeError:
        callback()
        return None


class Panel:
    """The interactive panel's logic: a text box, a family to draw from and a 'draw another' button above the
    view. Typing shows the new list's view after a pause (PAUSE) or at once on Enter, never per keystroke; a bad
    list is one line beside the box (the view keeps the last good list); choosing a family, or 'draw another',
    draws the family's next list and shows it. `screen` draws (Screen), `later` schedules (call_later)."""

    def __init__(self, model, default=None, families=None, task=None, explanation=None, head=None, screen=None,
                 later=call_later, pause: float = PAUSE):
        import ipywidgets as widgets
        self.run = lambda values: run_on(model, values, task, explanation, head)[0]
        note = ""
        if default is None:
            default, note = example(model, task, head)
        self.view = self.run(default)
        self.view.note = f"Default list: {note}." if note else ""
        self.screen = Screen() if screen is None else screen
        self.later, self.pause, self.pending = later, pause, None
        self.picks = {name: iter(()) for name in families or {}}
        self.lists = {name: tokens[:, :-1].tolist() for name, (tokens, _) in (families or {}).items()}
        self.shown = self.drawn = " ".join(map(str, self.view.values))
        self.box = widgets.Text(value=self.shown, description="list:", continuous_update=True,
                                layout=widgets.Layout(width="24em"))
        self.family = widgets.Dropdown(options=[PLACEHOLDER, *self.lists], description="draw from:",
                                       layout=widgets.Layout(width="22em"))
        self.another = widgets.Button(description="draw another", disabled=True)
        self.status = widgets.HTML(HINT)
        self.box.observe(self.typed, names="value")
        self.box.on_msg(self.submitted)
        self.family.observe(self.chosen, names="value")
        self.another.on_click(lambda _: self.draw())
        row = widgets.HBox([self.box, self.family, self.another], layout=widgets.Layout(flex_flow="row wrap"))
        self.controls = widgets.VBox([row, self.status])

    def display(self):
        from IPython.display import display
        display(self.controls)
        self.screen.draw(self.view)

    def typed(self, change):
        """A keystroke: (re)start the pause; a list typed by hand is no longer the family's draw."""
        self.cancel()
        if change["new"] != self.drawn and self.family.value != PLACEHOLDER:
            self.family.value = PLACEHOLDER
        if change["new"] != self.shown:
            self.pending = self.later(self.pause, self.update)

    def submitted(self, _, content, buffers):
        if content.get("event") == "submit":  # Enter in the box (the frontend's message)
            self.update()

    def chosen(self, change):
        self.another.disabled = change["new"] not in self.lists
        if change["new"] in self.lists:
            self.draw()

    def draw(self):
        """The chosen family's next list (round and round), into the box and onto the screen."""
        name = self.family.value
        values = next(self.picks[name], None)
        if values is None:
            self.picks[name] = iter(self.lists[name])
            values = next(self.picks[name])
        self.drawn = " ".join(map(str, values))
        self.box.value = self.drawn
        self.update(f"drawn from {name}")

    def update(self, said: str = ""):
        """Show the box's list, unless it is the one shown; a bad list is one line in the status."""
        self.cancel()
        if self.box.value == self.shown:
            self.status.value = html.escape(said or HINT)
            return
        try:
            view = self.run(self.box.value)
        except BadList as error:
            self.status.value = (f"<span style='color:#b00'>error: {html.escape(str(error))}</span> (the view "
                                 f"below is still of {' '.join(map(str, self.view.values))})")
            return
        self.view, self.shown, self.status.value = view, self.box.value, html.escape(said or HINT)
        self.screen.draw(view)

    def cancel(self):
        if self.pending is not None:
            self.pending.cancel()
        self.pending = None


def panel(model, default=None, families=None, task=None, explanation=None, head=None):
    """The interactive panel (Panel) in a notebook: controls, then the view of the list they hold, replaced in place.
    default: the first list (None: `example`'s, one on which the head does what it is there to show); families:
    {label: (tokens, targets)} to draw lists from; explanation: an object with .logits(tokens) and
    .attention(tokens) shown beside the model; head: the head to highlight ('L1H0' or (1, 0)). Without a widget
    frontend (headless execution, a static renderer) the first list's view is what the notebook keeps."""
    Panel(model, default, families, task, explanation, head).display()


def load_explanation(model, task: str, checkpoint):
    """<task>/explanation.py's load_saved(model, checkpoint): the explanation fitted to this run, or None (also when
    the task has no explanation.py)."""
    try:
        module = importlib.import_module(f"{task}.explanation")
    except ModuleNotFoundError as error:
        if error.name != f"{task}.explanation":
            raise
        return None
    load_saved = getattr(module, "load_saved", None)
    return load_saved(model, checkpoint) if load_saved else None


OPTIONS = {"checkpoint": "PATH", "head": "L1H0"}


def usage() -> str:
    from .published import task_names
    return "\n".join([
        "usage: python -m shared.explore TASK v1 v2 ... vn [--checkpoint=PATH] [--head=L1H0]",
        f"  TASK        one of: {', '.join(task_names())} (a folder holding dataset.py and training.py)",
        "  v1 ... vn   the list: n values in 0..V-1 of the checkpoint's n and V",
        "  --checkpoint=PATH  the model to run (default: TASK/checkpoints/model.pt)",
        "  --head=L1H0        the head to highlight, and to compare the explanation with",
        "Prints the model's answer, the true answer, the top probabilities, every head's attention from SEP and its",
        "scores, and, where TASK/explanation.py has one saved for this run (load_saved), the explanation's answer",
        "and attention beside the model's."])


def arguments(args: list) -> tuple:
    """(task, values, options) of the command line, checked (BadInput with the one-line reason)."""
    from .published import ROOT, task_names
    options = {}
    for arg in (a for a in args if a.startswith("--")):
        name, _, value = arg[2:].partition("=")
        if name not in OPTIONS or not value:
            raise BadInput(f"{arg}: unknown option; known: " + ", ".join(f"--{k}={v}" for k, v in OPTIONS.items()))
        options[name] = value
    rest = [a for a in args if not a.startswith("--")]
    if rest[0] not in task_names():
        raise BadInput(f"unknown task {rest[0]} (tasks: {', '.join(task_names())})")
    options.setdefault("checkpoint", ROOT / rest[0] / "checkpoints/model.pt")
    return rest[0], rest[1:], options


def main(argv=None) -> int:
    from .checkpoint import CheckpointError, load_checkpoint
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(usage())
        return 0
    if not [a for a in args if not a.startswith("--")]:
        print(usage(), file=sys.stderr)
        return 2
    try:
        task, values, options = arguments(args)
        model = load_checkpoint(Path(options["checkpoint"]), task=task)
        explanation = load_explanation(model, task, Path(options["checkpoint"]))
        print(text(run_on(model, values, explanation=explanation, head=options.get("head"))[0]))
    except (BadInput, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
