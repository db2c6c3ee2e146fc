"""Claims as verdicts: what a notebook says about a model, each claim measured on the model it loaded.

A Claim holds its measured value, its threshold and whether it holds; claims_table shows them. This module is
the machinery and the measures any task's claims are built from; each task's own claims live in its folder
(<task>/claims.py), one function per notebook section, so the notebook and the tests compute them in one place.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch

from . import circuits as C
from . import faithfulness as F
from .components import mlp_name, output_names, outputs_from
from .progress import formation_step, track
from .tasks import answer_positions, family_predictions

COMPARE = {">=": lambda v, t: v >= t, ">": lambda v, t: v > t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}


@dataclass
class Claim:
    key: str  # short name, for tests and for verdict()
    text: str  # what is claimed, naming the component measured
    value: Optional[float]  # the measurement; None where this model has no such component
    op: str  # how value compares with threshold: ">=", ">", "<=" or "<"
    threshold: float
    unit: str = ""  # "%" shows value and threshold as percentages
    note: str = ""  # how it was measured, or why it could not be

    @property
    def holds(self) -> bool:
        return self.value is not None and not math.isnan(self.value) and COMPARE[self.op](self.value, self.threshold)

    def show(self, x) -> str:
        if x is None:
            return "n/a"
        return f"{x:.2%}" if self.unit == "%" else f"{x:.3f}"


def claims_table(claims) -> str:
    """Markdown: claim, measured value, threshold, verdict (holds / FAILS)."""
    lines = ["| claim | measured | threshold | verdict |", "|---|---:|---:|---|"]
    for c in claims:
        text = (c.text + (f" ({c.note})" if c.note else "")).replace("|", "\\|")  # a | would end the cell
        lines.append(f"| {text} | {c.show(c.value)} | {c.op} {c.show(c.threshold)} | "
                     f"{'holds' if c.holds else '**FAILS**'} |")
    return "\n".join(lines)


def by_key(claims) -> dict:
    return {c.key: c for c in claims}


def verdict(claims, keys) -> str:
    """Markdown: the claims named in keys as a table, then one line: they all hold on this model, or which fail.
    A notebook states a section's hypothesis in markdown and shows this below it, so the prose never claims
    what the loaded model contradicts."""
    keys = [keys] if isinstance(keys, str) else keys
    rows = [by_key(claims)[k] for k in keys]
    line = (f"**Verdict: the hypothesis holds on this model** (all {len(rows)} rows)." if not failing(rows) else
            "**Verdict: the hypothesis does not hold on this model**; failing: " + describe(failing(rows)) + ".")
    return claims_table(rows) + "\n\n" + line


def failing(claims) -> list:
    return [c for c in claims if not c.holds]


def describe(claims) -> str:
    """'text (measured)' of each claim, joined by '; '."""
    return "; ".join(f"{c.text} ({c.show(c.value)})" for c in claims)


def verdict_counts(claims) -> str:
    held = sum(c.holds for c in claims)
    return f"{held} of {len(claims)} claims hold"


# ----------------------------------------------------------------------------------------------- measures
def suite_accuracies(model, suite):
    """(predictions, accuracies, weakest family) of the model on every family of the suite, from one pass."""
    predictions = family_predictions(model, suite)
    accuracies = {name: (predictions[name] == y).float().mean().item() for name, (_, y) in suite.items()}
    return predictions, accuracies, min(accuracies, key=accuracies.get)


def qk_spread(model, head, n) -> float:
    """Largest minus smallest full-QK score a layer-0 head gives from SEP to any value at any position:
    attention weights differ by at most a factor e^spread, so a small spread means averaging."""
    V = model.cfg.d_vocab_out
    scores = C.full_qk_circuit(model, head, V, n, range(n))[:, :V]
    return (scores.max() - scores.min()).item()


def accuracy_claims(suite, accuracies: dict, weakest: str) -> list:
    """Right on the suite's fresh uniform lists (>= 99.9%) and on every family (>= 99%), as the recipe promises."""
    return [Claim("accuracy", f"accuracy on {len(suite.uniform[1]):,} fresh uniform lists",
                  accuracies[suite.uniform_label], ">=", 0.999, "%"),
            Claim("weakest_family", f"accuracy on the weakest family ({weakest})", accuracies[weakest], ">=", 0.99, "%")]


def heads(model):
    return [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]


def most_frequent_answer_rate(targets) -> float:
    """Accuracy of always answering the most common target: what a model that learnt nothing from the
    input can reach."""
    return torch.bincount(targets).max().item() / len(targets)


@torch.no_grad()
def one_hot_attention_accuracy(model, tokens, targets, layer, head):
    """Accuracy with the head's attention from the last position forced onto the answer's first position."""
    position = answer_positions(tokens, targets).float().argmax(-1)
    return (model.run_with_hooks(tokens, [C.attend_only_to(layer, head, position)])[:, -1].argmax(-1)
            == targets).float().mean().item()


@torch.no_grad()
def qk_value_profile(model, layer, head, query_token, n):
    """[n, V] full QK scores from query_token at the last position to each value at each key position, and
    whether they are exact (layer 0 reads the embeddings; later layers: direct path only)."""
    V = model.cfg.d_vocab_out
    scores = C.full_qk_circuit(model, head, query_token, n, range(n), layer=layer)[:, :V]
    return scores, layer == 0


def qk_summaries(scores) -> dict:
    """Monotonicity of a [pos, V] score table in the value: worst rank correlation over positions, the
    smallest and median score(t) - score(t+1) at one position, and how much positions move a value's score."""
    V = scores.shape[1]
    gaps = scores[:, :-1] - scores[:, 1:]
    return {"rank correlation": max(C.rank_correlation(row, torch.arange(V)) for row in scores),
            "smallest gap": gaps.min().item(), "median gap": gaps.median().item(),
            "position spread": (scores.max(0).values - scores.min(0).values).mean().item()}


@torch.no_grad()
def ov_matrix(model, layer, head, tokens):
    """The head's full OV circuit over values [V, V] (direct path). With LayerNorm it is read at the
    middle key position and with ln_final's scale measured on tokens: an approximation, said in the note."""
    V = model.cfg.d_vocab_out
    scale = None if isinstance(model.ln_final, torch.nn.Identity) else C.final_scale(model, tokens)
    position = (tokens.shape[1] - 1) // 2 if C.has_layernorm(model, layer) else None
    return C.full_ov_circuit(model, head, layer, position=position, final_scale=scale)[:V]


def ov_note(model, layer) -> str:
    cfg = model.cfg
    parts = []
    if cfg.normalization_type:
        parts.append("LayerNorm linearised at its measured scale")
    if cfg.d_mlp or layer < cfg.n_layers - 1:
        parts.append("direct path only")
    return "; ".join(parts)


def off_by_one_share(ov) -> float:
    """Of the OV rows whose largest logit is not the attended value itself, the share that miss it by one
    value (1.0 when no row misses)."""
    argmax = ov.argmax(-1)
    miss = argmax != torch.arange(len(ov))
    if not miss.any():
        return 1.0
    return ((argmax[miss] - torch.arange(len(ov))[miss]).abs() == 1).float().mean().item()


def architecture(model) -> str:
    cfg = model.cfg
    return (f"{cfg.n_layers} layer(s) x {cfg.n_heads} head(s), "
            f"{'MLP ' + str(cfg.d_mlp) if cfg.d_mlp else 'attention-only'}, "
            f"{'LayerNorm' if cfg.normalization_type else 'no LayerNorm'}")


def verification_claims(verdict) -> list:
    """One row from shared.verify's verdict on every input of the task: the smallest logit margin over all of
    them, with every float32 rounding against it (positive: proved right on every input)."""
    note = {"proved": f"proved; exact worst-case margin {verdict.margin:.3f}" if verdict.margin is not None else "",
            "refuted": f"refuted: e.g. {' '.join(map(str, verdict.counterexamples[0][0]))} -> "
                       f"{verdict.counterexamples[0][1]}, answer {verdict.counterexamples[0][2]}"
            if verdict.counterexamples else "refuted",
            "out of scope": f"out of scope: {verdict.reason}"}[verdict.status]
    value = verdict.float32_margin if verdict.float32_margin is not None else (
        verdict.margin if verdict.method == "every input run" else None)
    return [Claim("proved", f"right on every one of the {verdict.inputs:,} inputs, decided from the weights "
                  f"(shared.verify, {verdict.method}): smallest logit margin over all of them, every float32 "
                  "rounding against it", value, ">", 0.0, note=note)]


def faithfulness_claims(results, circuit: str, threshold: float, key: str = "faithful", note: str = "") -> list:
    """Two rows from shared.faithfulness.faithfulness_by_family: the share of loss the circuit recovers on
    uniform lists, and on the family where it recovers least (every other path resampled from the same family).
    results None: the circuit does not exist in this model; both rows n/a, with `note` saying why."""
    uniform = results.uniform_label if results else None
    worst = F.weakest_family(results) if results else None
    recovered = lambda family: results[family]["loss recovered"] if results else None
    return [Claim(f"{key}_uniform", f"{circuit}: loss recovered on uniform lists (all else resampled)",
                  recovered(uniform), ">=", threshold, "%", note=note),
            Claim(f"{key}_families", f"... on the family where it recovers least ({worst or 'none'})",
                  recovered(worst), ">=", threshold, "%", note=note)]


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
    clean, corrupt, clean_y, corrupt_y = pairs
    try:
        return C.patch(model, clean, corrupt, clean_y, corrupt_y, hook, position=position, head=head)
    except ValueError:
        return None


@torch.no_grad()
def mlp_input_shares(model, tokens, layer) -> dict:
    """{component: the share of MLP `layer`'s pre-activation variance at SEP that the component's output alone
    explains, 1 - var(pre - part) / var(pre) per neuron, averaged with each neuron's output variance as its
    weight} for every head and MLP before it: which writers its neurons read."""
    writers = F.senders(model, mlp_name(layer))
    pre_name = f"blocks.{layer}.mlp.hook_pre"
    _, cache = model.run_with_cache(tokens, names_filter=output_names(model, writers) + [pre_name])
    pre = cache[pre_name][:, -1]
    weight = torch.relu(pre).var(0)
    W_in = model.blocks[layer].mlp.W_in
    shares = {}
    for name, output in outputs_from(cache, model, writers).items():
        part = output[:, -1] @ W_in
        explained = 1 - (pre - part).var(0) / pre.var(0).clamp(min=1e-12)
        shares[name] = ((explained * weight).sum() / weight.sum()).item()
    return shares


# ------------------------------------------------------------------------------------------------ formation
def formation_series(snapshots, task, suite, family_keys, measures) -> tuple:
    """(series, marks): shared.progress.track over the snapshots, on 500 lists of each of the task's
    families named by key (measures are named by their labels), with 2,000 of the suite's uniform lists as
    probe; and the formation step of each of `measures` that the model has (shared.progress.formation_step)."""
    draw = task.families()
    families = {draw.label(key): (x[:500], y[:500]) for key in family_keys for x, y in [draw.of(key)]}
    probe = suite.of("uniform")
    series = track(snapshots, families, (probe[0][:2000], probe[1][:2000]))
    marks = {m: formation_step(series["step"], series[m]) for m in measures if m in series}
    return series, marks


def formation_claim(marks: dict, structure: str, accuracy: str) -> Claim:
    """The structure `structure` (a progress measure) forms no later than the accuracy `accuracy` it
    supports: the difference of their formation steps (shared.progress.formation_step) is <= 0."""
    s, a = marks.get(structure), marks.get(accuracy)
    value = None if s is None or a is None else s - a
    return Claim("formation", f"'{structure}' forms (step {s}) no later than '{accuracy}' (step {a}): "
                 "difference of steps", value, "<=", 0, note="snapshots of this run")
