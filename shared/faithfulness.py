"""How much of the model does a stated circuit explain? Resample everything outside it and measure.

A circuit is a set of paths (sender component, receiver): heads ('L0H1') and MLPs ('MLP 0') send; a head's
query, key or value input ('L1H0.q'), an MLP or the logits receive (circuit_of(model, keep) takes every path
out of whole components). The embeddings are the input and reach everything. On every path outside the
circuit the receiver sees the sender's output on another input of the same family instead (resample
ablation: activations stay realistic, only their information about this input is gone), and

    loss recovered = (L_all_resampled - L_circuit) / (L_all_resampled - L_model)

is 100% when the circuit alone does what the model does and 0% when it does no better than the model with
every path resampled (Chan et al. 2022, causal scrubbing; Wang et al. 2022, faithfulness in the IOI paper).
An explanation can also say what a kept head does: run_circuit's `attention` forces its attention onto
stated keys. Completeness (IOI): removing any one component the circuit sends from should cost the circuit
about what it costs the model.
"""
from functools import partial

import torch

from .ablation import attention_restricted, other_inputs, reads, run_patched
from .components import components, output_hook, output_names, outputs_from, parse, receivers, senders
from .tables import markdown_table, pct
from .tasks import loss_and_accuracy


def circuit_of(model, keep) -> set:
    """The circuit of whole components: every path out of a kept component, into anything."""
    for c in keep:
        output_hook(model, c)  # a misspelt component is an error, not a silently empty circuit
    return {(s, r) for r in receivers(model) for s in senders(model, r) if s in set(keep)}


@torch.no_grad()
def _outputs(model, tokens) -> dict:
    """Every component's output on a normal run."""
    _, cache = model.run_with_cache(tokens, names_filter=output_names(model, components(model)))
    return outputs_from(cache, model, components(model))


@torch.no_grad()
def run_circuit(model, tokens, targets, circuit, reference, attention=None, reference_outputs=None):
    """(mean loss, accuracy) of the model run with only the paths in `circuit` (a set of (sender component,
    receiver) pairs: see receivers(); circuit_of(model, keep) for whole components) carrying this input:
    every other path into a receiver carries the sender's output on the reference input (row i of
    `reference` for row i of tokens), as it is on a normal run of that input. The embeddings are the input
    and reach everything. attention: {head ('L1H0'): key mask [batch, k]} restricts that head's attention
    from the last position onto those keys (shared.ablation.attention_restricted): what an explanation may say
    the head does ("attends only to the answer")."""
    edges = set(circuit)
    unknown = {r for _, r in edges} - set(receivers(model)) | {s for s, _ in edges} - set(components(model))
    if unknown:
        raise ValueError(f"not a component or receiver of this model: {sorted(unknown)}")
    other = reference_outputs if reference_outputs is not None else _outputs(model, reference)
    patches = []
    for receiver in receivers(model):
        outside = {s: other[s] for s in senders(model, receiver) if (s, receiver) not in edges}
        if outside:
            patches.append(reads(model, receiver, outside))
    patches += [attention_restricted(*parse(head), mask) for head, mask in (attention or {}).items()]
    return loss_and_accuracy(run_patched(model, tokens, patches)[:, -1], targets)


def recovered(loss, ablated, intact) -> float:
    """(L_all_ablated - loss) / (L_all_ablated - L_model); NaN when ablating everything costs nothing."""
    return (ablated - loss) / (ablated - intact) if ablated - intact > 1e-9 else float("nan")


@torch.no_grad()
def circuit_faithfulness(model, tokens, targets, circuit, attention=None, seed=0, completeness=False) -> dict:
    """The circuit (run_circuit's paths) on (tokens, targets), inputs of one family, each resampled from
    another of them: (loss, accuracy) of the model, of the model with every path resampled, and of the
    circuit; the share of loss recovered; with completeness=True, for each component the circuit sends
    from, the loss recovered by the model without it and by the circuit without it (IOI's completeness:
    the two should be close)."""
    reference = other_inputs(tokens, seed)
    run = partial(run_circuit, model, tokens, targets, reference=reference, reference_outputs=_outputs(model, reference))
    everything = circuit_of(model, components(model))
    intact = run(everything)
    ablated = run(set())
    kept = run(circuit, attention=attention)
    result = {"inputs": len(tokens), "model": intact, "all ablated": ablated, "circuit": kept,
              "loss recovered": recovered(kept[0], ablated[0], intact[0])}
    if completeness:
        result["without"] = {}
        for c in sorted({s for s, _ in circuit}):
            model_without = run({e for e in everything if e[0] != c})
            circuit_without = run({e for e in circuit if e[0] != c}, attention=attention)
            result["without"][c] = (recovered(model_without[0], ablated[0], intact[0]),
                                    recovered(circuit_without[0], ablated[0], intact[0]))
    return result


def attend_only(head, key_mask) -> dict:
    """run_circuit's `attention` for 'head attends from SEP only to the keys where key_mask [batch, n] is True',
    e.g. shared.tasks.answer_positions(tokens, targets) for the answer's positions."""
    return {head: key_mask}


@torch.no_grad()
def faithfulness_by_family(model, suite: dict, circuit, attention_of=None, size=2000, seed=0) -> dict:
    """{family: circuit_faithfulness(...)} on the first `size` inputs of every family of the suite;
    attention_of(tokens, targets, family) gives the `attention` for those inputs (e.g. attend_only("L0H0",
    answer_positions(tokens, targets))), or None. The results keep the suite's family keys (shared.tasks.Families)."""
    found = {}
    for name, (tokens, targets) in suite.items():
        x, y = tokens[:size], targets[:size]
        attention = attention_of(x, y, name) if attention_of else None
        found[name] = circuit_faithfulness(model, x, y, circuit, attention, seed)
    return suite.like(found)


def weakest_family(results: dict) -> str:
    """The family of faithfulness_by_family's results where the circuit recovers least (an undefined, NaN,
    recovery counts as least: shown, not hidden)."""
    recovered = lambda name: results[name]["loss recovered"]
    return min(results, key=lambda name: float("-inf") if recovered(name) != recovered(name) else recovered(name))


def faithfulness_table(results: dict) -> str:
    """Markdown, one row per family: accuracy of the model, of everything resampled, of the circuit, and the
    loss recovered."""
    return markdown_table(["family", "inputs", "model accuracy", "all resampled", "circuit accuracy", "loss recovered"],
                          [[name, f"{r['inputs']:,}", pct(r["model"][1]), pct(r["all ablated"][1]),
                            pct(r["circuit"][1]), pct(r["loss recovered"])] for name, r in results.items()])
