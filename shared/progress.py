"""Progress measures: circuit measures taken on every training snapshot, to watch structure form.

A group of measures is a function model -> {measure name: number}; `track` takes every group on every snapshot,
and `formation_step` says from which step a measure stays near its final value. The builders below make the
groups both notebooks use, named after the components they read; each task picks those it plots.
"""
import torch

from . import circuits as C
from .ablation import ablated_accuracy
from .components import head_name
from .tasks import answer_positions, family_accuracies


def accuracies(families: dict):
    """model -> {"accuracy: <family>": accuracy} on each of `families`."""
    return lambda model: {f"accuracy: {name}": a for name, a in family_accuracies(model, families).items()}


def attention_on_answer(probe):
    """model -> {"attention on answer: <head>": the head's mean SEP attention on the answer's positions}, every
    head, on probe = (tokens, targets)."""
    tokens, targets = probe
    mask = answer_positions(tokens, targets)

    def measure(model):
        shares = C.attention_on(model, tokens, mask)
        return {f"attention on answer: {head_name(l, h)}": shares[l, h].item()
                for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)}
    return measure


def composition(cfg, early, late):
    """model -> {"<kind>-composition <early>-><late> / baseline": the score over random heads'}, kind Q, K, V."""
    from .composition import composition_baseline, composition_scores  # loaded only when composition is watched
    pair = f"{head_name(*early)}->{head_name(*late)}"
    baseline = {kind: composition_baseline(cfg, kind) for kind in "QKV"}
    return lambda model: {f"{kind}-composition {pair} / baseline":
                          (composition_scores(model, kind)[(*early, *late)] / baseline[kind]).item() for kind in "QKV"}


def head_ablations(heads, probe):
    """model -> {"accuracy with <head> ablated": accuracy on probe with that head mean-ablated}."""
    return lambda model: {f"accuracy with {name} ablated": ablated_accuracy(model, *probe, [name]) for name in heads}


@torch.no_grad()
def track(snapshots, groups) -> dict:
    """{"step": [...], measure: [...]} over [(step, model)] snapshots, in order, for every group of measures."""
    rows = [{name: value for group in groups for name, value in group(model).items()} for _, model in snapshots]
    return {"step": [step for step, _ in snapshots], **{name: [row[name] for row in rows] for name in rows[0]}}


def formation_step(steps, values, fraction=0.9, tolerance=0.1):
    """The first step from which a measure stays at least `fraction` of the way from its first value to its
    last: when that structure has formed. None when the whole change is at most `tolerance` (in the measure's
    own units; accuracies, attention weights and composition ratios are all of order 1), since a move that
    small is noise, not a structure forming. A measure that settles only at the last snapshot gets that step:
    the snapshots cannot say when it formed, only that it was not before (formation_gap)."""
    start, end = values[0], values[-1]
    if abs(end - start) <= tolerance:
        return None
    done = [(v - start) / (end - start) >= fraction for v in values]
    for i in range(len(done)):
        if all(done[i:]):
            return steps[i]
    return steps[-1]


def formation_gap(series: dict, structure: str, accuracy: str) -> tuple:
    """(value, note) for the hypothesis 'the structure forms no later than the accuracy it supports': the
    difference of their formation steps (formation_step) over a `track` series, and how many snapshots apart they
    are. A structure that settles only at the last snapshot may form later still: after an accuracy formed earlier,
    that is a lower bound of the difference (still a FAIL); None, with the reason, when both settle only there or
    either measure barely moves."""
    steps = series["step"]
    formed, accurate = formation_step(steps, series[structure]), formation_step(steps, series[accuracy])
    if formed is None or accurate is None:
        return None, f"{structure if formed is None else accuracy} barely moves over the snapshots"
    if formed == steps[-1] == accurate:
        return None, f"{structure} and {accuracy} both settle only at the last snapshot (step {formed})"
    apart = abs(steps.index(formed) - steps.index(accurate))
    return formed - accurate, (f"{structure} settles only at the last snapshot (step {formed}), {accuracy} at step "
                               f"{accurate}: at least {formed - accurate} steps later" if formed == steps[-1] else
                               f"formed at steps {formed} and {accurate}, {apart} snapshot(s) apart")


def progress_at(series: dict, measure: str, step) -> float:
    """How far a measure had come from its first value to its last at `step` (0: not at all, 1: all the way):
    where a structure stood when the accuracy it supports formed."""
    values = series[measure]
    return (values[series["step"].index(step)] - values[0]) / (values[-1] - values[0])
