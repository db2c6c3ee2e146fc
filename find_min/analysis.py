"""find_min's analysis, one section of analyze.ipynb per function: each section measures once into the record,
and `hypotheses` / `measurements` read the record, so the notebook and the tests state the same thing.

`measure(model, suite, task, snapshots)` runs every section on whatever model is loaded; the head examined is the
one whose SEP attention lands most on the minimum, so every section runs on any model training.py can make and says
where a reading is only approximate. To add a hypothesis, measure what it needs in its section and add a Claim to
that section's claims function.
"""
import math

import torch

from shared import circuits as C
from shared import faithfulness as faith
from shared import measures as M
from shared.ablation import ablated_accuracy
from shared.claims import (ALMOST_ALL, BAR_UNIFORM, MOST, Claim, Measurement, accuracy_claims, faithfulness_claim,
                           formation_claim, formation_measurement, verification_claim)
from shared.components import head_name
from shared.progress import accuracies, attention_on_answer, formation_record, layer0_circuits
from shared.tasks import answer_positions
from shared.verify import verify

from .dataset import task

SAMPLE = 20000  # uniform lists for the attention, ablation and algorithm measures


@torch.no_grad()
def measure_selection(model, suite) -> dict:
    """Section 2: the head whose SEP attention lands most on the minimum, its share there on uniform lists and on
    near ties, and every head's share."""
    few, few_targets = suite.sample(SAMPLE)
    (layer, head), shares = C.head_most_on(model, few, answer_positions(few, few_targets))
    near_x, near_y = suite.of("near_tie")
    return {"layer": layer, "head": head, "name": head_name(layer, head), "every head on the minimum": shares,
            "on minimum": shares[layer, head].item(),
            "on minimum, near ties": C.attention_on(model, near_x, answer_positions(near_x, near_y))[layer, head].item()}


@torch.no_grad()
def measure_circuits(model, suite, layer, head, n) -> dict:
    """Sections 3 and 4: the full QK scores from SEP per key value and position (exact in layer 0) with their
    summaries, and the full OV circuit with its copying measures."""
    scores, exact = M.qk_value_profile(model, layer, head, n)
    ov = M.ov_matrix(model, layer, head, suite.sample(SAMPLE)[0])
    return {"qk": scores, "qk exact": exact, **M.qk_summaries(scores), "ov": ov,
            "ov diagonal": C.diagonal_fraction(ov), "ov copying": C.copying_score(ov), "ov off by one": M.off_by_one_share(ov),
            "ov note": M.ov_note(model, layer)}


@torch.no_grad()
def measure_causal(model, suite, record) -> dict:
    """Section 5 and 6: accuracy with the head mean-ablated against chance, with its SEP attention forced onto the
    minimum, and select-then-copy's agreement with the model (read off the weights where that is exact)."""
    few, few_targets = suite.sample(SAMPLE)
    layer, head, name = record["layer"], record["head"], record["name"]
    chance = M.most_frequent_answer_rate(few_targets)
    out = {"chance": chance, "chance margin": M.chance_margin(chance, len(few_targets)),
           "ablated": ablated_accuracy(model, few, few_targets, [name]),
           "one hot": M.one_hot_attention_accuracy(model, few, few_targets, layer, head)}
    tokens, _ = suite.uniform
    if C.is_one_head_attention_only(model):
        predicted, how = C.select_and_copy_from_weights(model, tokens)[0], "read off the weights alone (exact here)"
    elif layer == 0 or not C.has_layernorm(model, layer):
        predicted = C.select_and_copy_from_activations(model, few, layer, head)[0]
        how = (f"from {name}'s real scores and OV row (approximate: the weights alone are exact only for 1 layer, "
               "1 head, no MLP, no LayerNorm)")
    else:
        predicted, how = None, "not computable: a later layer's OV row through ln1"
    answers = record["predictions"][suite.uniform_label]
    out.update(algorithm=None if predicted is None else (predicted == answers[:len(predicted)]).float().mean().item(),
               algorithm_lists=0 if predicted is None else len(predicted), algorithm_how=how)
    return out


@torch.no_grad()
def measure(model, suite, task, snapshots=None, snapshots_note: str = "") -> dict:
    """Every section's measures on `model`, in the notebook's order, as one record. suite:
    shared.tasks.evaluation_suite(task); snapshots: [(step, model)] of this run, or None (snapshots_note: why)."""
    record = M.correctness(model, suite)
    record["verification"] = verify(model, task)
    record.update(measure_selection(model, suite))
    record.update(measure_circuits(model, suite, record["layer"], record["head"], task.n))
    record.update(measure_causal(model, suite, record))
    name = record["name"]
    record["faithfulness"] = faith.faithfulness_by_family(model, suite, faith.circuit_of(model, [name]), lambda x, y, f:
                                                          faith.attend_only(name, answer_positions(x, y)), size=1000)
    record.update(measure_formation(model, suite, task, record, snapshots), **{"snapshots note": snapshots_note})
    return record


def measure_formation(model, suite, task, record, snapshots) -> dict:
    """Section 7: accuracy, the examined head's attention on the minimum and (one layer) its QK and OV summaries
    on every snapshot; the claim compares when the attention forms with when uniform accuracy does."""
    families = {suite.label(f): (x[:500], y[:500]) for f in ("uniform", "balanced", "near_tie")
                for x, y in [suite.of(f)]}
    probe = tuple(t[:2000] for t in suite.of("uniform"))
    groups = [accuracies(families), attention_on_answer(probe)]
    if model.cfg.n_layers == 1 and record["layer"] == 0:
        groups.append(layer0_circuits(record["head"], task.n))
    return formation_record(snapshots, groups, f"attention on answer: {record['name']}",
                            f"accuracy: {suite.label('uniform')}")


def hypotheses(record) -> list:
    """Every hypothesis of the notebook, from the record, in the notebook's order."""
    name, n, exact = record["name"], len(record["qk"]), record["qk exact"]
    note = "exact" if exact else "direct path only: not exact past layer 0"
    return [
        *accuracy_claims(record), verification_claim(record["verification"]),
        Claim("selects", f"{name} (the head most on the minimum) selects it: SEP's attention on the minimum, uniform "
              "lists", record["on minimum"], ">=", ALMOST_ALL, "'selects' means almost all of the attention"),
        Claim("near_ties", f"{name} still gives the minimum most of SEP's attention on near ties, where all {n - 1} "
              "other keys sit one value above it", record["on minimum, near ties"], ">", MOST,
              "'most' means more than half"),
        Claim("qk_strict", f"{name}'s full QK score from SEP falls strictly with the key's value at every position: "
              "the smallest score(t) - score(t+1)", record["qk smallest gap"], ">", 0.0,
              "'strictly' means every step is positive", note=note),
        Claim("qk_margin", f"a typical step score(t) - score(t+1) (the median) lets a single minimum win half the "
              f"attention from {n - 1} keys one value above it", record["qk median gap"], ">=", math.log(n - 1),
              f"that takes a score ln({n - 1}) above theirs", note=note),
        Claim("qk_positions", "positions barely move a value's score: the mean spread of a value's score over "
              f"positions, against the median value step {record['qk median gap']:.2f}", record["qk position spread"],
              "<", record["qk median gap"], "'barely' means less than one value step", note=note),
        Claim("ov_diagonal", f"{name}'s full OV circuit copies every value: the share of rows whose largest logit is "
              "the attended value", record["ov diagonal"], ">=", 1.0, "'every value' means every row",
              "%", note=record["ov note"]),
        Claim("ablation", f"{name} mean-ablated leaves the model at chance (always answering the most common "
              f"minimum: {record['chance']:.2%}): accuracy", record["ablated"], "<=",
              record["chance"] + record["chance margin"], "'at chance' means within three standard errors of it", "%"),
        Claim("one_hot", f"{name}'s SEP attention forced onto the minimum keeps the model right: accuracy",
              record["one hot"], ">=", BAR_UNIFORM, "as right as the bar for uniform lists", "%"),
        Claim("algorithm", f"select-then-copy {record['algorithm_how']} reproduces the model: agreement on "
              f"{record['algorithm_lists']:,} uniform lists", record["algorithm"], ">=", BAR_UNIFORM,
              "'reproduces' means agreeing on as many lists as the bar", "%"),
        faithfulness_claim(record["faithfulness"], f"{name} alone, attending only to the minimum", "faithful"),
        formation_claim(record),
    ]


def measurements(record) -> list:
    """What the sections show beside their hypotheses, never counted."""
    worst = faith.weakest_family(record["faithfulness"])
    return [
        Measurement("errors", f"wrong answers over all {record['inputs']:,} inputs of the suite", record["errors"]),
        Measurement("qk_rank", f"{record['name']}'s QK rank correlation with the key's value (worst position)",
                    record["qk rank correlation"]),
        Measurement("ov_copying", "its OV copying score Re(sum eig) / sum |eig| (1: only positive eigenvalues)",
                    record["ov copying"]),
        Measurement("ov_off_by_one", "of the OV rows that miss the attended value, the share that miss it by one",
                    record["ov off by one"], "%"),
        Measurement("faithful_uniform", "the head alone on the minimum: loss recovered on uniform lists",
                    record["faithfulness"][record["faithfulness"].uniform_label]["loss recovered"], "%"),
        Measurement("faithful_least", f"the head alone on the minimum: loss recovered on the family where it recovers "
                    f"least ({worst})",
                    record["faithfulness"][worst]["loss recovered"], "%"),
        formation_measurement(record),
    ]


def checkpoint_record(model, suite) -> tuple:
    """(claims, measurements) of the notebook for `model` alone, snapshots left out (benchmarks/claims_across_seeds.py)."""
    record = measure(model, suite, task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out), None,
                     "across seeds: snapshots not kept")
    return hypotheses(record), measurements(record)


def explore(model, tokens, cache, view, context: dict):
    """shared.explore's readings for one list: the examined head's QK score from SEP per key and the margin of the
    best key over the runner-up (context: a notebook record, whose head it is; else the head most on the minimum
    of this list)."""
    values = tokens[0, :-1]
    if "layer" in context:
        layer, head = context["layer"], context["head"]
    else:
        layer, head = C.head_most_on(model, tokens, answer_positions(tokens, torch.tensor([view.truth])))[0]
    scores = cache["attn_scores", layer][0, head, -1]
    view.readings[f"{head_name(layer, head)} score"] = scores.tolist()
    best, second = scores[:-1].topk(2).values.tolist() if len(values) > 1 else (scores[0].item(), scores[0].item())
    view.lines.append(f"{head_name(layer, head)}'s best key (value {values[scores[:-1].argmax()].item()}) scores "
                      f"{best - second:.2f} above the runner-up key")
