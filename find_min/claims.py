"""find_min's claims, one function per section of analyze.ipynb, each measured on whatever model is loaded.

`claims(model, suite, task)` runs them all in the notebook's order; the notebook and tests/test_find_min.py call
it, so a claim is computed in one place. The head examined is found by measurement (the head whose SEP attention
lands most on the minimum), so every section runs on any model training.py can make and says where a reading is
only approximate. To add a claim, add a Claim to the section it belongs to.
"""
import math
import torch

from shared import circuits as C
from shared import faithfulness as F
from shared.claims import (Claim, accuracy_claims, faithfulness_claims, heads, most_frequent_answer_rate,
                           off_by_one_share, one_hot_attention_accuracy, ov_matrix, ov_note, qk_summaries,
                           qk_value_profile, suite_accuracies, verification_claims)
from shared.components import head_name
from shared.tasks import answer_positions
from shared.verify import verify
from find_min.dataset import task as task_of_shape

SAMPLE = 20000  # uniform lists for the attention, ablation and algorithm claims


def uniform_lists(suite, sample: int = SAMPLE):
    """(tokens, targets) of the suite's fresh uniform lists, and the first `sample` of them."""
    tokens, targets = suite.uniform
    return (tokens, targets), (tokens[:sample], targets[:sample])


def selecting_head(model, suite) -> tuple:
    """(layer, head) whose attention from SEP lands most on the minimum, on uniform lists, and every head's
    attention there [layer, head]."""
    _, (few, few_targets) = uniform_lists(suite)
    on_min = C.attention_on(model, few, answer_positions(few, few_targets))
    return max(heads(model), key=lambda lh: on_min[lh].item()), on_min


@torch.no_grad()
def correctness(model, suite, task, predictions, accuracies, weakest, verification) -> list:
    """Section 1 and 6b: right on fresh uniform lists and every family, and on every input where the weights
    decide it (shared.verify)."""
    errors = sum((predictions[name] != y).sum().item() for name, (_, y) in suite.items())
    inputs = sum(len(y) for _, y in suite.values())
    return [*accuracy_claims(suite, accuracies, weakest),
            Claim("errors", f"share of wrong answers over all {inputs:,} inputs ({errors:,} wrong)", errors / inputs,
                  "<=", 0.001, "%"),
            *verification_claims(verification)]


@torch.no_grad()
def selection(model, suite, layer, head, on_min) -> list:
    """Section 2: the head puts SEP's attention on the minimum, on uniform lists (on_min: selecting_head's
    measure) and on near ties."""
    name = head_name(layer, head)
    near_x, near_y = suite.of("near_tie")
    return [
        Claim("selects", f"{name} (the head most on the minimum) puts SEP's attention on the minimum, uniform lists",
              on_min[layer, head].item(), ">=", 0.9),
        Claim("near_ties", f"{name} still gives the minimum most of SEP's attention on near ties",
              C.attention_on(model, near_x, answer_positions(near_x, near_y))[layer, head].item(), ">=", 0.5),
    ]


@torch.no_grad()
def qk_circuit(model, n, layer, head) -> list:
    """Section 3: the full QK score from SEP falls strictly with the key's value, by steps that win the softmax,
    and positions barely move it."""
    name = head_name(layer, head)
    scores, exact = qk_value_profile(model, layer, head, model.cfg.d_vocab_out, n)
    qk = qk_summaries(scores)
    note = "exact" if exact else "direct path only: not exact past layer 0"
    return [
        Claim("qk_monotone", f"{name}'s full QK score falls with the key's value: worst rank correlation over "
              "positions", qk["rank correlation"], "<=", -0.99, note=note),
        Claim("qk_strict", f"{name}'s QK score strictly decreasing: smallest score(t) - score(t+1) at one position",
              qk["smallest gap"], ">", 0.0, note=note),
        Claim("qk_margin", f"a typical step score(t) - score(t+1) (median) wins half the attention from n-1 = {n - 1} "
              f"keys one value above: at least ln({n - 1})", qk["median gap"], ">=", math.log(n - 1), note=note),
        Claim("qk_positions", f"positions move a value's score less than one typical value step: mean spread over "
              f"positions, against the median step {qk['median gap']:.2f}", qk["position spread"], "<",
              qk["median gap"], note=note),
    ]


@torch.no_grad()
def ov_circuit(model, suite, layer, head) -> list:
    """Section 4: the full OV circuit copies the attended value to its own logit."""
    _, (few, _) = uniform_lists(suite)
    name = head_name(layer, head)
    ov = ov_matrix(model, layer, head, few)
    return [
        Claim("ov_diagonal", f"{name}'s full OV circuit copies: rows peaking on the attended value",
              C.diagonal_fraction(ov), ">=", 0.9, "%", note=ov_note(model, layer)),
        Claim("ov_copying", f"{name}'s OV copying score Re(sum eig) / sum |eig|", C.copying_score(ov), ">=", 0.5,
              note=ov_note(model, layer)),
        Claim("ov_off_by_one", "OV rows that miss the diagonal miss it by one value", off_by_one_share(ov), ">=",
              0.8, "%"),
    ]


@torch.no_grad()
def causal_checks(model, suite, layer, head) -> list:
    """Section 5: without the head the model is at chance; with its attention forced onto the minimum it is right."""
    _, (few, few_targets) = uniform_lists(suite)
    name = head_name(layer, head)
    chance = most_frequent_answer_rate(few_targets)
    return [
        Claim("ablation", f"{name} mean-ablated: accuracy no better than always answering the most common minimum "
              f"({chance:.2%}) + 5 points", C.ablated_accuracy(model, few, few_targets, [name]), "<=",
              chance + 0.05, "%"),
        Claim("one_hot", f"{name}'s SEP attention forced one-hot onto the minimum: accuracy",
              one_hot_attention_accuracy(model, few, few_targets, layer, head), ">=", 0.999, "%"),
    ]


@torch.no_grad()
def algorithm(model, suite, predictions, layer, head) -> list:
    """Section 6: select-then-copy reproduces the model (read off the weights where the architecture allows)."""
    (tokens, _), _ = uniform_lists(suite)
    uniform_name = suite.uniform_label
    name = head_name(layer, head)
    if C.is_one_head_attention_only(model):
        predicted, _ = C.select_and_copy_from_weights(model, tokens)  # cheap: no forward pass
        how = "select-then-copy read off the weights alone (exact for this architecture)"
    elif layer == 0 or not C.has_layernorm(model, layer):
        predicted, _ = C.select_and_copy_from_activations(model, tokens[:SAMPLE], layer, head)
        how = (f"select-then-copy from {name}'s real scores and OV row (approximate: weights alone are exact "
               "only for 1 layer, 1 head, no MLP, no LayerNorm)")
    else:
        predicted, how = None, "select-then-copy (not computable: a later layer's OV row through ln1)"
    answers = predictions[uniform_name][:len(predicted)] if predicted is not None else None
    agree = None if predicted is None else (predicted == answers).float().mean().item()
    return [Claim("algorithm", f"{how}: agreement with the model on "
                  f"{len(predicted) if predicted is not None else 0:,} uniform lists", agree, ">=", 0.999, "%")]


@torch.no_grad()
def faithfulness(model, suite, layer, head):
    """Section 6, 'how much does the explanation explain?': the head alone, attending only to the minimum,
    recovers the loss on every family. Returns (claims, shared.faithfulness results)."""
    name = head_name(layer, head)
    results = F.faithfulness_by_family(model, suite, F.circuit_of(model, [name]),
                                       lambda tokens, targets: F.attend_only(name, answer_positions(tokens, targets)))
    return faithfulness_claims(results, f"{name} alone, attending only to the minimum", 0.99), results


@torch.no_grad()
def claims(model, suite: dict, task) -> dict:
    """Every section's claims on `model`, in the notebook's order. suite: shared.tasks.evaluation_suite(task).
    Returns {"claims": [...], "selecting head": (l, h), "faithfulness": ..., "verification": shared.verify's
    Verdict}."""
    n = task.n
    (layer, head), on_min = selecting_head(model, suite)
    predictions, accuracies, weakest = suite_accuracies(model, suite)
    verification = verify(model, task)
    faithful_claims, faithful = faithfulness(model, suite, layer, head)
    found = [*correctness(model, suite, task, predictions, accuracies, weakest, verification),
             *selection(model, suite, layer, head, on_min), *qk_circuit(model, n, layer, head),
             *ov_circuit(model, suite, layer, head), *causal_checks(model, suite, layer, head),
             *algorithm(model, suite, predictions, layer, head), *faithful_claims]
    return {"claims": found, "selecting head": (layer, head), "faithfulness": faithful, "verification": verification}


def checkpoint_claims(model, suite) -> list:
    """The notebook's claims table for `model` alone (benchmarks/claims_across_seeds.py)."""
    return claims(model, suite, task_of_shape(model.cfg.n_ctx - 1, model.cfg.d_vocab_out))["claims"]
