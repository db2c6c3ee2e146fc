"""Which mechanism did a model learn? A few measured quantities per model, and a rule that names its class.

Studies of universality train many seeds of one recipe and sort each run by measured statistics (Chughtai,
Chan & Nanda 2023, "A Toy Model of Universality"; Zhong et al. 2023, "The Clock and the Pizza"). Here
`mechanism_measures` reads the same few numbers from any model of a list task, and `classify` names its
class with the first of the task's `Mechanism`s whose conditions all hold. Each task states its classes and
thresholds in its own folder (MECHANISMS in <task>/mechanisms.py), with the measurements the thresholds came from.
The sweep (shared.tools.sweep) writes each seed's summary_row (its accuracy, these measures, its class, the
verifier's verdict) into its summary.
"""
import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .checkpoint import load_checkpoint
from .ablation import ablated_accuracy
from .circuits import attention_on, direct_logits, head_most_on
from .hypotheses import COMPARE
from .components import components, head_name, is_mlp, output_names, outputs_from
from .faithfulness import attend_only, circuit_of, faithfulness_by_family
from .tables import markdown_table, num
from .tasks import answer_positions, evaluation_suite, family_accuracies
from .verify import verify

MEASURE_LISTS = 4000  # the uniform lists (of an evaluation suite) the measures are read on

# The measures, in the order of the summary's columns, and what each one is (the notebooks' legend).
MEASURES = {
    "answer_attention": "the largest mean attention any head at SEP puts on the positions holding the answer",
    "selector_layer": "the layer of that head (the 'selector')",
    "selector_head": "its index in that layer",
    "runner_up_attention": "the second largest share of SEP's attention any head puts on the answer (0: one head)",
    "neighbourhood_attention": "the selector's attention on the answer and on the nearest value either side of it "
                               "in sorted order (a soft selection spreads there)",
    "selector_dla": "share of lists on which the selector's direct logits alone give the model's answer",
    "attention_dla": "share on which all heads' direct logits together give the model's answer",
    "mlp_dla": "share on which all MLPs' direct logits together give the model's answer (None: no MLP)",
    "selector_ablated": "accuracy with the selector mean-ablated",
    "mlps_ablated": "accuracy with every MLP mean-ablated at once (None: no MLP)",
}

@dataclass(frozen=True)
class Circuit:
    """What an explanation keeps, for shared.faithfulness: a description, keep(model, selector name) -> the
    components kept, and keys(tokens, targets) -> [batch, n] the positions the selector's attention is
    restricted to (None: its attention is left as it is)."""
    description: str
    keep: Callable
    keys: Optional[Callable] = None


SELECTOR_ALONE = Circuit("the selector alone, attending only to the answer", lambda model, selector: [selector],
                         answer_positions)
SELECTOR_ON_ANSWER = Circuit("every path, the selector attending only to the answer",
                             lambda model, selector: components(model), answer_positions)


@dataclass
class Mechanism:
    """One class of mechanism: its name (may name a measure in braces: "selects in layer {selector_layer}"),
    the conditions {measure: (op, threshold)} that all hold for a model of the class, one sentence on what
    such a model computes, and the Circuit its explanation states, for faithfulness. Each task states its
    classes in <task>/mechanisms.py (MECHANISMS)."""
    name: str
    conditions: dict
    meaning: str
    circuit: Circuit = SELECTOR_ON_ANSWER

    def matches(self, measures: dict) -> bool:
        return all(measures.get(m) is not None and COMPARE[op](measures[m], t)
                   for m, (op, t) in self.conditions.items())

    def named(self, measures: dict) -> str:
        return self.name.format(**measures)


def neighbourhood(tokens, targets):
    """[batch, n]: the positions holding the answer or the nearest value either side of it in sorted order."""
    values = tokens[:, :-1]
    ordered = values.sort(1).values
    below = (ordered < targets[:, None]).sum(1) - 1  # sorted index of the nearest value below (-1: none)
    above = (ordered <= targets[:, None]).sum(1)  # ... above (n: none)
    rows = torch.arange(len(values))
    low = torch.where(below >= 0, ordered[rows, below.clamp(min=0)], targets)
    high = torch.where(above < values.shape[1], ordered[rows, above.clamp(max=values.shape[1] - 1)], targets)
    return (values >= low[:, None]) & (values <= high[:, None])


UNCLASSIFIED = "unclassified"

def classify(measures: dict, mechanisms) -> str:
    """The name of the first mechanism whose conditions all hold, else 'unclassified'."""
    for mechanism in mechanisms:
        if mechanism.matches(measures):
            return mechanism.named(measures)
    return UNCLASSIFIED


def meaning(name: str, mechanisms) -> str:
    """The sentence that goes with a class name classify() gave."""
    mechanism = mechanism_of(name, mechanisms)
    return mechanism.meaning if mechanism else "no stated class's conditions all hold"


def mechanism_of(name: str, mechanisms):
    """The Mechanism a class name classify() gave belongs to (None for 'unclassified')."""
    for mechanism in mechanisms:
        if name == mechanism.name or ("{" in mechanism.name and name.startswith(mechanism.name.split("{")[0])):
            return mechanism
    return None


@torch.no_grad()
def class_faithfulness(model, mechanism, measures: dict, suite: dict, size: int = 300):
    """(description, shared.faithfulness.faithfulness_by_family results) of the circuit the class's
    explanation states, on this model (its selector found by mechanism_measures)."""
    circuit = mechanism.circuit
    selector = head_name(measures["selector_layer"], measures["selector_head"])
    attention_of = (lambda tokens, targets, family: attend_only(selector, circuit.keys(tokens, targets))) if circuit.keys \
        else None
    return circuit.description, faithfulness_by_family(model, suite, circuit_of(model, circuit.keep(model, selector)),
                                                       attention_of, size)


@torch.no_grad()
def mechanism_measures(model, tokens, targets) -> dict:
    """MEASURES on (tokens, targets): uniform lists of the task, a few thousand are plenty."""
    parts = components(model)
    heads, mlps = [c for c in parts if not is_mlp(c)], [c for c in parts if is_mlp(c)]
    logits, cache = model.run_with_cache(tokens, names_filter=output_names(model, parts))
    outputs = {c: output[:, -1] for c, output in outputs_from(cache, model, parts).items()}  # at SEP
    answer = logits[:, -1].argmax(-1)
    agree = lambda residual: (direct_logits(model, residual).argmax(-1) == answer).float().mean().item()
    (layer, head), on_answer = head_most_on(model, tokens, answer_positions(tokens, targets))
    selector = head_name(layer, head)
    selector_ablated = ablated_accuracy(model, tokens, targets, [selector])
    mlps_ablated = ablated_accuracy(model, tokens, targets, mlps) if mlps else None
    return {
        "answer_attention": on_answer[layer, head].item(),
        "selector_layer": layer,
        "selector_head": head,
        "runner_up_attention": on_answer.flatten().sort(descending=True).values[1].item() if on_answer.numel() > 1
        else 0.0,
        "neighbourhood_attention": attention_on(model, tokens, neighbourhood(tokens, targets))[layer, head].item(),
        "selector_dla": agree(outputs[selector]),
        "attention_dla": agree(sum(outputs[c] for c in heads)),
        "mlp_dla": agree(sum(outputs[c] for c in mlps)) if mlps else None,
        "selector_ablated": selector_ablated,
        "mlps_ablated": mlps_ablated,
    }



# -------------------------------------------------------------------------------------------- across seeds
def spread_table(rows: list, measures=None) -> str:
    """Markdown: each measure's smallest, median and largest value over the rows (seeds), and their spread."""
    measures = measures or [m for m in MEASURES if m not in ("selector_layer", "selector_head")
                            and rows[0].get(m) is not None]
    table = []
    for m in measures:
        values = sorted(r[m] for r in rows)
        table.append([m] + [num(x) for x in (values[0], values[len(values) // 2], values[-1], values[-1] - values[0])])
    return markdown_table(["measure", "smallest", "median", "largest", "largest - smallest"], table)


def measures_on(model, suite: dict) -> dict:
    """mechanism_measures on the first MEASURE_LISTS uniform lists of an evaluation suite (the sweep's lists)."""
    tokens, targets = suite.uniform
    return mechanism_measures(model, tokens[:MEASURE_LISTS], targets[:MEASURE_LISTS])


# ------------------------------------------------------------------------------------------ a sweep's summary
def training_figures(meta: dict) -> dict:
    """When a checkpoint's run reached its target, in steps and seconds, from its recorded history."""
    history = meta["history"]
    reached = history.get("target_reached")
    seconds = history["seconds"][history["step"].index(reached)] if reached is not None else None
    return {"held-out": history["eval_accuracy"][-1], "target reached": reached is not None,
            "steps": history["stopped_at"], "seconds to target": seconds, "train seconds": meta["train_seconds"]}


def summary_row(task_name: str, seed: int, path) -> dict:
    """One seed of a sweep, recomputed from its checkpoint: accuracy on the evaluation suite (100,000 uniform lists
    and every family), the weakest family, when training reached its target, the mechanism measures (measures_on),
    the class <task>/mechanisms.py's MECHANISMS give them, the task's own measures (TASK_MEASURES there: model,
    suite -> {name: value}, if it has them), and shared.verify's verdict on every input with its margins."""
    model = load_checkpoint(path, task=task_name)
    task = importlib.import_module(f"{task_name}.dataset").task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out)
    suite = evaluation_suite(task)
    accuracies = family_accuracies(model, suite)
    weakest = min(accuracies, key=accuracies.get)
    measures = measures_on(model, suite)
    mechanisms = importlib.import_module(f"{task_name}.mechanisms")
    row = {"seed": seed, **accuracies, "weakest family": weakest, "weakest accuracy": accuracies[weakest],
           **training_figures(model.metadata), **measures, "mechanism": classify(measures, mechanisms.MECHANISMS)}
    row.update(getattr(mechanisms, "TASK_MEASURES", lambda model, suite: {})(model, suite))
    verdict = verify(model, task)
    return {**row, "verified": verdict.status, "worst-case margin": verdict.margin,
            "float32 margin": verdict.float32_margin}

