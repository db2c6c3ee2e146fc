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
import torch.nn.functional as F

from .components import components, head_name, is_mlp, mlp_name, output_hook, output_names, outputs_from, parse


def other_inputs(tokens, seed=0):
    """A reordering of tokens in which no row stays in place (row i of the result is another input of the
    same batch), for resample ablation within one family."""
    if len(tokens) < 2:
        raise ValueError("resample ablation needs at least two inputs")
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    other = torch.empty_like(order)
    other[order] = order.roll(-1)  # each row takes the next one in a random cycle through all rows
    return tokens[other]


def receivers(model) -> list:
    """What a path can end in: each head's query, key and value input ('L1H0.q'), each MLP, and 'logits'."""
    heads = [c for c in components(model) if not is_mlp(c)]
    mlps = [c for c in components(model) if is_mlp(c)]
    return [f"{h}.{x}" for h in heads for x in "qkv"] + mlps + ["logits"]


def circuit_of(model, keep) -> set:
    """The circuit of whole components: every path out of a kept component, into anything."""
    for c in keep:
        output_hook(model, c)  # a misspelt component is an error, not a silently empty circuit
    return {(s, r) for r in receivers(model) for s in senders(model, r) if s in set(keep)}


def senders(model, receiver):
    """Components whose output reaches `receiver`'s input: earlier layers, and this layer's heads for its MLP."""
    if receiver == "logits":
        return components(model)
    layer = parse(receiver.split(".")[0])[0]
    return [c for c in components(model) if parse(c)[0] < layer or (is_mlp(receiver) and parse(c)[0] == layer
                                                                     and not is_mlp(c))]


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
    from the last position onto the keys where a mask [batch, k <= pos] is True, in the proportions the head
    itself gives them (evenly where its weight there underflowed; an input without such a key keeps its
    pattern): what an explanation may say the head does ("attends only to the answer")."""
    cfg, edges = model.cfg, set(circuit)
    unknown = {r for _, r in edges} - set(receivers(model)) | {s for s, _ in edges} - set(components(model))
    if unknown:
        raise ValueError(f"not a component or receiver of this model: {sorted(unknown)}")
    other = reference_outputs if reference_outputs is not None else _outputs(model, reference)  # computed once by
    own = {}  # faithfulness() for all its runs
    P = tokens.shape[1]
    x0 = model.W_E[tokens] + model.W_pos[:P]

    def read(receiver):  # the residual stream as `receiver` sees it
        before = cfg.n_layers if receiver == "logits" else parse(receiver.split(".")[0])[0] + is_mlp(receiver)
        x = x0 + sum(model.blocks[l].attn.b_O for l in range(before))  # b_O: constant, in no component
        for s in senders(model, receiver):
            x = x + (own[s] if (s, receiver) in edges else other[s])
        return x

    causal = torch.ones(P, P, dtype=torch.bool, device=tokens.device).tril()
    for l, block in enumerate(model.blocks):
        a = block.attn
        for h in range(cfg.n_heads):
            name = head_name(l, h)
            q, k, v = (block.ln1(read(f"{name}.{x}")) @ W[h] + b[h]
                       for x, W, b in (("q", a.W_Q, a.b_Q), ("k", a.W_K, a.b_K), ("v", a.W_V, a.b_V)))
            pattern = (q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).masked_fill(~causal, float("-inf")).softmax(-1)
            if attention and name in attention:  # only the stated keys, in the proportions the head gives them
                allowed = F.pad(attention[name].to(pattern.device, pattern.dtype), (0, P - attention[name].shape[1]))
                kept = pattern[:, -1] * allowed
                total = kept.sum(-1, keepdim=True)  # 0 where the head's weight there underflowed: spread evenly
                even = allowed / allowed.sum(-1, keepdim=True).clamp(min=1)
                restricted = torch.where(total > 0, kept / total.clamp(min=1e-30), even)
                pattern[:, -1] = torch.where(allowed.any(-1, keepdim=True), restricted, pattern[:, -1])  # no key: as is
            own[name] = pattern @ v @ a.W_O[h]
        if block.mlp is not None:
            own[mlp_name(l)] = block.mlp(block.ln2(read(mlp_name(l))))
    return loss_and_accuracy((model.ln_final(read("logits")) @ model.W_U + model.b_U)[:, -1], targets)


def loss_and_accuracy(logits, targets) -> tuple:
    """(mean cross-entropy, accuracy) of last-position logits [batch, d_vocab_out] against targets [batch]."""
    return F.cross_entropy(logits, targets).item(), (logits.argmax(-1) == targets).float().mean().item()


def recovered(loss, ablated, intact) -> float:
    """(L_all_ablated - loss) / (L_all_ablated - L_model); NaN when ablating everything costs nothing."""
    return (ablated - loss) / (ablated - intact) if ablated - intact > 1e-9 else float("nan")


@torch.no_grad()
def faithfulness(model, tokens, targets, circuit, attention=None, seed=0, completeness=False) -> dict:
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
    """{family: faithfulness(...)} on the first `size` inputs of every family of the suite; attention_of(tokens,
    targets) gives the `attention` for those inputs (e.g. partial(attention_on_answer, "L0H0")), or None. The
    results keep the suite's family keys (shared.tasks.Families)."""
    found = {}
    for name, (tokens, targets) in suite.items():
        x, y = tokens[:size], targets[:size]
        found[name] = faithfulness(model, x, y, circuit, attention_of(x, y) if attention_of else None, seed)
    return suite.like(found)


def weakest_family(results: dict) -> str:
    """The family of faithfulness_by_family's results where the circuit recovers least (an undefined, NaN,
    recovery counts as least: shown, not hidden)."""
    recovered = lambda name: results[name]["loss recovered"]
    return min(results, key=lambda name: float("-inf") if recovered(name) != recovered(name) else recovered(name))


def faithfulness_table(results: dict) -> str:
    """Markdown, one row per family: accuracy of the model, of everything resampled, of the circuit, and the
    loss recovered."""
    lines = ["| family | inputs | model accuracy | all resampled | circuit accuracy | loss recovered |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['inputs']:,} | {r['model'][1]:.2%} | {r['all ablated'][1]:.2%} | "
                     f"{r['circuit'][1]:.2%} | {r['loss recovered']:.2%} |")
    return "\n".join(lines)
