"""The measures both tasks' sections take, each returning plain numbers (or a tensor to draw) for a record.

A notebook section measures once into a flat record ({name: number}), builds its claims from the record and
draws its figures from it; this module holds the measures that are not one task's own.
"""
import math

import torch

from . import circuits as C
from .ablation import attention_one_hot, run_patched
from .patching import patch
from .components import mlp_name, output_names, outputs_from, senders
from .tasks import answer_positions, family_accuracies, family_answers, mistakes


def correctness(model, suite, keep=None) -> dict:
    """The model's answers on every family of an evaluation suite and what follows from them: accuracy on the
    fresh uniform lists, the weakest family, every family's accuracy, and the mistakes (all of them). keep: a hook
    name whose activations the same pass keeps, per family (record["kept"])."""
    kept = {} if keep else None
    answers = family_answers(model, suite, keep, kept)
    predictions = {name: predicted for name, (predicted, _) in answers.items()}
    accuracies = family_accuracies(model, suite, predictions)
    weakest = suite.like(accuracies).weakest()
    wrong = mistakes(suite, predictions, limit=10 ** 9)
    return {"kept": kept, "answers": answers, "predictions": predictions, "accuracies": accuracies,
            "uniform lists": len(suite.uniform[1]), "accuracy": accuracies[suite.uniform_label], "weakest family": weakest,
            "weakest accuracy": accuracies[weakest], "mistakes": wrong,
            "inputs": sum(len(y) for _, y in suite.values()), "errors": len(wrong)}


def architecture(model) -> str:
    cfg = model.cfg
    return (f"{cfg.n_layers} layer(s) x {cfg.n_heads} head(s), "
            f"{'MLP ' + str(cfg.d_mlp) if cfg.d_mlp else 'attention-only'}, "
            f"{'LayerNorm' if cfg.normalization_type else 'no LayerNorm'}")


def most_frequent_answer_rate(targets) -> float:
    """Accuracy of always answering the most common target: what a model that learnt nothing from the input
    can reach."""
    return torch.bincount(targets).max().item() / len(targets)


def chance_margin(rate: float, size: int) -> float:
    """Three standard errors of a share `rate` measured on `size` inputs: how far above chance an accuracy may
    sit and still be chance."""
    return 3 * math.sqrt(rate * (1 - rate) / size)


@torch.no_grad()
def one_hot_attention_accuracy(model, tokens, targets, layer, head) -> float:
    """Accuracy with the head's attention from the last position forced onto the answer's first position."""
    position = answer_positions(tokens, targets).float().argmax(-1)
    logits = run_patched(model, tokens, [attention_one_hot(layer, head, position)])[:, -1]
    return (logits.argmax(-1) == targets).float().mean().item()


def qk_spread(model, head, n) -> float:
    """Largest minus smallest full-QK score a layer-0 head gives from SEP to any value at any position:
    attention weights differ by at most a factor e^spread."""
    V = model.cfg.d_vocab_out
    scores = C.full_qk_circuit(model, head, V, n, range(n))[:, :V]
    return (scores.max() - scores.min()).item()


@torch.no_grad()
def qk_value_profile(model, layer, head, n):
    """[n, V] full QK scores from SEP at the last position to each value at each key position, and whether they
    are exact (layer 0 reads the embeddings; later layers: the direct path only)."""
    V = model.cfg.d_vocab_out
    return C.full_qk_circuit(model, head, V, n, range(n), layer=layer)[:, :V], layer == 0


def qk_summaries(scores) -> dict:
    """Monotonicity of a [pos, V] score table in the value: worst rank correlation over positions, the
    smallest and median score(t) - score(t+1) at one position, and how much positions move a value's score."""
    V = scores.shape[1]
    gaps = scores[:, :-1] - scores[:, 1:]
    return {"qk rank correlation": max(C.rank_correlation(row, torch.arange(V)) for row in scores),
            "qk smallest gap": gaps.min().item(), "qk median gap": gaps.median().item(),
            "qk position spread": (scores.max(0).values - scores.min(0).values).mean().item()}


@torch.no_grad()
def ov_matrix(model, layer, head, tokens):
    """The head's full OV circuit over values [V, V] (direct path). With LayerNorm it is read at the middle key
    position and with ln_final's scale measured on tokens: an approximation, said by ov_note."""
    V = model.cfg.d_vocab_out
    scale = None if isinstance(model.ln_final, torch.nn.Identity) else C.final_scale(model, tokens)
    position = (tokens.shape[1] - 1) // 2 if C.has_layernorm(model, layer) else None
    return C.full_ov_circuit(model, head, layer, position=position, final_scale=scale)[:V]


def ov_note(model, layer) -> str:
    cfg = model.cfg
    parts = ["LayerNorm linearised at its measured scale"] if cfg.normalization_type else []
    if cfg.d_mlp or layer < cfg.n_layers - 1:
        parts.append("direct path only")
    return "; ".join(parts)


def off_by_one_share(ov) -> float:
    """Of the OV rows whose largest logit is not the attended value itself, the share that miss it by one value
    (1.0 when no row misses)."""
    argmax = ov.argmax(-1)
    miss = argmax != torch.arange(len(ov))
    if not miss.any():
        return 1.0
    return ((argmax[miss] - torch.arange(len(ov))[miss]).abs() == 1).float().mean().item()


@torch.no_grad()
def direct_logit_agreement(model, tokens, names) -> float:
    """How often the argmax of the summed direct logits (shared.circuits.direct_logits) of the components `names`
    ('L1H0', 'MLP 1') is the model's answer."""
    logits, cache = model.run_with_cache(tokens, names_filter=output_names(model, names))
    total = sum(output[:, -1] for output in outputs_from(cache, model, names).values())
    return (C.direct_logits(model, total).argmax(-1) == logits[:, -1].argmax(-1)).float().mean().item()


@torch.no_grad()
def patched_fraction(model, pairs, hook, position, head=None):
    """shared.circuits.patch on (clean, corrupt, clean answers, corrupt answers); None where the model's clean
    and corrupted logit differences are too close for a fraction to mean anything."""
    try:
        return patch(model, *pairs, hook, position=position, head=head)
    except ValueError:
        return None


@torch.no_grad()
def mlp_input_shares(model, tokens, layer) -> dict:
    """{component: the share of MLP `layer`'s pre-activation variance at SEP that the component's output alone
    explains, 1 - var(pre - part) / var(pre) per neuron, averaged with each neuron's output variance as its
    weight} for every head and MLP before it: which writers its neurons read."""
    writers = senders(model, mlp_name(layer))
    pre_name = f"blocks.{layer}.mlp.hook_pre"
    _, cache = model.run_with_cache(tokens, names_filter=output_names(model, writers) + [pre_name])
    pre = cache[pre_name][:, -1]
    weight = torch.relu(pre).var(0)
    W_in = model.blocks[layer].mlp.W_in
    shares = {}
    for name, output in outputs_from(cache, model, writers).items():
        explained = 1 - (pre - output[:, -1] @ W_in).var(0) / pre.var(0).clamp(min=1e-12)
        shares[name] = ((explained * weight).sum() / weight.sum()).item()
    return shares
