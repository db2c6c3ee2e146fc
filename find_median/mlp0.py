"""MLP 0 of a find_median model, neuron by neuron: how an average of the list becomes its median.

Layer 0's head attends (nearly) evenly at SEP, so each neuron j of MLP 0 sees, there,

    pre_j = c_j + sum_i beta_j(x_i)        beta_j(v) = token[v, j] / (n + 1)    (shared.neurons.neuron_terms)

c_j holds the biases, SEP's own token and position, and the positions' terms (constant at uniform attention).
`read_mlp0` fits a shape to every beta_j (shared.neurons.fit_shapes), ranks the neurons by the loss their
mean-ablation at SEP costs, and for a step at threshold t with scale s (beta_j ~ offset + s [v > t]) reads
pre_j ~ c_j + n offset + s #(x > t): the ReLU turns on once at least `turn_on` values lie on the side of t the
neuron counts (above when s > 0, below when s < 0). A neuron that turns on at k + 1 = (n + 1) / 2 values fires
iff the median lies on its side of t: MLP 0 writes the median as a set of threshold indicators.
`reading_tests` then tests that reading causally: every neuron's beta replaced by its fitted shape inside the
trained model, and MLP 0's output at SEP resampled from a list with the same median.
"""
import torch
import torch.nn.functional as F

from find_median.dataset import answer, balanced
from shared import circuits as C
from shared.claims import Claim
from shared.faithfulness import loss_and_accuracy, recovered
from shared.neurons import (best_shape, fit_shapes, loss_kept, neuron_terms, resample_matched,
                            run_with_token_response, uniform_pattern)
from shared.tasks import last_logits, to_tokens, uniform_values

IMPORTANT = 0.01  # a neuron is important when mean-ablating it alone at SEP costs this much loss on uniform lists
TRANSITION = 3  # the refined reading keeps a step's exact response within this many values of its threshold


def drawn_lists(draw, size, n, V, seed):
    """(tokens, medians) of `size` fresh lists from draw(size, n, V, gen): uniform_values, dataset.balanced."""
    values = draw(size, n, V, torch.Generator().manual_seed(seed))
    return to_tokens(values, V), answer(values)


@torch.no_grad()
def neuron_importance(model, tokens, targets) -> torch.Tensor:
    """[d_mlp]: the loss increase when each neuron of MLP 0 alone is mean-ablated at SEP (its mean over tokens)."""
    hook = "blocks.0.mlp.hook_post"
    _, cache = model.run_with_cache(tokens, names_filter=hook)
    mean = cache[hook][:, -1].mean(0)
    base = F.cross_entropy(last_logits(model, tokens), targets).item()
    costs = []
    for j in range(model.cfg.d_mlp):
        def ablate(post, hook, j=j):
            post = post.clone()
            post[:, -1, j] = mean[j]
            return post
        costs.append(F.cross_entropy(model.run_with_hooks(tokens, [(hook, ablate)])[:, -1], targets).item() - base)
    return torch.tensor(costs)


@torch.no_grad()
def read_mlp0(model, size: int = 1000, seed: int = 21) -> dict:
    """The reading of MLP 0 at SEP (see the module's docstring), on `size` fresh uniform lists. Returns
    {"beta" [d_mlp, V], "constant" [d_mlp], "importance" [d_mlp], "order" (neurons by importance),
    "important" (the neurons whose ablation costs >= IMPORTANT), "fits" (fit_shapes), "kind" [d_mlp],
    "turn_on" [d_mlp] (the count on the counted side at which a step neuron turns on), "side" [d_mlp] (+1
    counts values above t, -1 below)}."""
    cfg = model.cfg
    V, n = cfg.d_vocab_out, cfg.n_ctx - 1
    terms = neuron_terms(model)
    if cfg.n_heads != 1:
        raise ValueError("read_mlp0 reads MLP 0 through one layer-0 head")
    sep = cfg.d_vocab - 1
    beta = (terms.token[0, :V] / (n + 1)).T  # [d_mlp, V]: one copy of v anywhere, at uniform attention
    constant = (terms.bias + terms.direct_token[sep] + terms.direct_position[n]
                + (terms.position[0, :n + 1].sum(0) + terms.token[0, sep]) / (n + 1))
    tokens, targets = drawn_lists(uniform_values, size, n, V, seed)
    importance = neuron_importance(model, tokens, targets)
    fits = fit_shapes(beta)
    kind = best_shape(fits)
    step = fits["step"]
    side = torch.where(step["scale"] > 0, 1, -1)
    # pre = constant + n offset + scale #(x > t) = base + |scale| #(on the counted side)
    base = constant + n * step["offset"] + torch.where(side > 0, 0.0, n * step["scale"])
    # the smallest count k with base + |scale| k > 0; a pre-activation of exactly 0 does not fire (the 1e-3
    # absorbs the fit's rounding at such a boundary, as in the hand-built model's exact integer thresholds)
    turn_on = torch.clamp(torch.floor(-base / step["scale"].abs() + 1e-3) + 1, 0, n + 1).long()
    order = importance.argsort(descending=True)
    important = order[importance[order] >= IMPORTANT]
    return {"beta": beta, "constant": constant, "importance": importance, "order": order, "important": important,
            "fits": fits, "kind": kind, "turn_on": turn_on, "side": side, "n": n, "V": V}


def near_median(reading, j: int, within: int = 0) -> bool:
    """Whether neuron j is a step turning on within `within` of k + 1 values on its side of t. A step turning on
    at c values above t fires iff the c-th largest value is above t: at k + 1, 'the median is above t' (within=0,
    a median indicator); within=1 adds the order statistics next to the median."""
    return reading["kind"][j] == "step" and abs(reading["turn_on"][j].item() - (reading["n"] // 2 + 1)) <= within


def median_indicator_share(reading, within: int = 0) -> float:
    """Of the important neurons, the share that are near_median(..., within)."""
    neurons = reading["important"].tolist()
    return sum(near_median(reading, j, within) for j in neurons) / max(1, len(neurons))


def step_summary(reading) -> dict:
    """The important neurons in three numbers: how many, the share of them that are steps, and the steps' median
    R^2 (None without steps)."""
    important = reading["important"].tolist()
    steps = [j for j in important if reading["kind"][j] == "step"]
    return {"important": len(important), "step_share": len(steps) / max(1, len(important)),
            "step_r2": reading["fits"]["step"]["r2"][steps].median().item() if steps else None}


def kinds_table(reading) -> str:
    """Markdown: per kind of shape, how many important neurons, the median R^2 of their fit, and for steps the
    thresholds and turn-on counts."""
    fits, kind = reading["fits"], reading["kind"]
    neurons = reading["important"].tolist()
    lines = ["| kind | important neurons | R^2 of the fit, median (min) | parameters |", "|---|---:|---:|---|"]
    for name in ("step", "ramp", "bump"):
        mine = [j for j in neurons if kind[j] == name]
        if not mine:
            lines.append(f"| {name} | 0 | - | - |")
            continue
        r2 = fits[name]["r2"][mine]
        if name == "step":
            t = fits["step"]["threshold"][mine]
            on = reading["turn_on"][mine]
            counts = ", ".join(f"{(on == c).sum().item()} at {c}" for c in sorted(set(on.tolist())))
            params = f"thresholds {t.min():.1f}..{t.max():.1f}; turn on at (count on its side): {counts}"
        elif name == "bump":
            params = f"centres {fits['bump']['centre'][mine].min():.1f}..{fits['bump']['centre'][mine].max():.1f}"
        else:
            params = f"slopes {fits['ramp']['scale'][mine].min():.3f}..{fits['ramp']['scale'][mine].max():.3f}"
        lines.append(f"| {name} | {len(mine)} | {r2.median():.3f} ({r2.min():.3f}) | {params} |")
    return "\n".join(lines)


def neuron_table(reading, top: int = 12) -> str:
    """Markdown: the `top` neurons by importance, each with its shape and what it computes."""
    fits = reading["fits"]
    lines = ["| neuron | loss when ablated | kind | R^2 | threshold t | counts values | turns on at | reads as |",
             "|---:|---:|---|---:|---:|---|---:|---|"]
    for j in reading["order"][:top].tolist():
        kind, step = reading["kind"][j], fits["step"]
        t, on, side = step["threshold"][j].item(), reading["turn_on"][j].item(), reading["side"][j].item()
        where = "above t" if side > 0 else "below t"
        meaning = (f"median {'>' if side > 0 else '<'} {t:g}" if near_median(reading, j) else
                   f">= {on} values {where}" if kind == "step" else "-")
        lines.append(f"| {j} | {reading['importance'][j]:.3f} | {kind} | {fits[kind]['r2'][j]:.3f} | "
                     f"{t:g} | {where} | {on} | {meaning} |")
    return "\n".join(lines)


@torch.no_grad()
def attention_uniformity(model, suite) -> dict:
    """{family: (largest deviation of layer 0's SEP attention from 1/(n+1), mean over lists; relative squared
    error of MLP 0's pre-activations at SEP rebuilt with uniform attention)}: how far the averaging reading
    holds on each family."""
    terms = neuron_terms(model)
    out = {}
    for family, (tokens, _) in suite.items():
        tokens = tokens[:1000]
        _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern", "blocks.0.mlp.hook_pre"])
        pattern = cache["pattern", 0][:, :, -1]
        seen = tokens.shape[1]
        deviation = (pattern - 1 / seen).abs().amax((1, 2)).mean().item()
        pre = cache["pre", 0][:, -1]
        rebuilt = terms.pre(tokens, uniform_pattern(tokens, model.cfg.n_heads))
        error = ((rebuilt - pre) ** 2).mean().item() / pre.var(0).mean().clamp_min(1e-12).item()
        out[family] = (deviation, error)
    return out


@torch.no_grad()
def reading_tests(model, reading, suite, seed: int = 0, size: int = 1000) -> dict:
    """The reading, causally. (a) Every important neuron's beta (the neurons read) replaced by the fitted shape
    of its kind, the other neurons and the rest of the model as trained: accuracy and loss per family, and the
    loss recovered against MLP 0's output mean-ablated; and the refined reading, each step's exact response kept
    within TRANSITION values of its threshold (its transition), the fitted shape elsewhere. (b) MLP 0's output
    at SEP resampled from another list with the same median, and from any other list (the control): loss, and
    the share of the control's loss increase the median alone avoids.
    The shapes' accuracy is on every list of each family (100,000 uniform ones); everything else on the first
    `size`. Returns {"substituted": {family: {...}}, "resampled": {family: {...}}}."""
    V, n = reading["V"], reading["n"]
    terms = neuron_terms(model)
    shape, refined = terms.token[0].clone(), terms.token[0].clone()  # [d_vocab, d_mlp]
    values = torch.arange(V, dtype=torch.float)
    for j in reading["important"].tolist():
        fitted = reading["fits"][reading["kind"][j]]["fitted"][j].clone()
        shape[:V, j] = fitted * (n + 1)
        if reading["kind"][j] == "step":
            near = (values - reading["fits"]["step"]["threshold"][j]).abs() <= TRANSITION
            fitted[near] = reading["beta"][j][near]
        refined[:V, j] = fitted * (n + 1)
    hook = "blocks.0.hook_mlp_out"
    substituted, resampled = {}, {}
    for family, (tokens, targets) in suite.items():
        sub_loss, sub_accuracy = loss_and_accuracy(run_with_token_response(model, tokens, shape)[:, -1], targets)
        tokens, targets = tokens[:size], targets[:size]
        logits, cache = model.run_with_cache(tokens, names_filter=hook)
        loss, accuracy = loss_and_accuracy(logits[:, -1], targets)
        reference = cache[hook]
        ablated, _ = loss_and_accuracy(model.run_with_hooks(tokens, [(hook, C.mean_ablation(reference))])[:, -1],
                                        targets)
        if len(targets) < len(suite[family][1]):  # the shape's loss recovered on the same lists as the rest
            sub_loss, _ = loss_and_accuracy(run_with_token_response(model, tokens, shape)[:, -1], targets)
        ref_loss, ref_accuracy = loss_and_accuracy(run_with_token_response(model, tokens, refined)[:, -1], targets)
        substituted[family] = {"accuracy": sub_accuracy, "model accuracy": accuracy, "loss": sub_loss,
                               "model loss": loss, "loss recovered": recovered(sub_loss, ablated, loss),
                               "refined accuracy": ref_accuracy,
                               "refined loss recovered": recovered(ref_loss, ablated, loss)}
        same, _ = loss_and_accuracy(resample_matched(model, tokens, hook, targets, seed=seed,
                                                      activation=reference)[:, -1], targets)
        control, _ = loss_and_accuracy(resample_matched(model, tokens, hook, torch.zeros_like(targets), seed=seed,
                                                         activation=reference)[:, -1], targets)
        resampled[family] = {"model loss": loss, "same median": same, "any list": control,
                             "kept": loss_kept(loss, same, control)}
    return {"substituted": suite.like(substituted), "resampled": suite.like(resampled)}



# --- how layer 1 reads MLP 0 ---------------------------------------------------------------------------------

@torch.no_grad()
def score_map(model, sel, size: int = 20000, seed: int = 22):
    """[V, V]: the selecting head's real score from SEP to a key holding value v (columns), averaged over
    balanced lists with median m (rows), each list's scores centred on their mean over its keys; NaN where no
    list holds that pair."""
    V, n = model.cfg.d_vocab_out, model.cfg.n_ctx - 1
    tokens, median = drawn_lists(balanced, size, n, V, seed)
    _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{sel[0]}.attn.hook_attn_scores")
    scores = cache["attn_scores", sel[0]][:, sel[1], -1, :-1]
    scores = scores - scores.mean(1, keepdim=True)
    cell = (median[:, None] * V + tokens[:, :-1]).flatten()
    total = torch.zeros(V * V).index_add_(0, cell, scores.flatten())
    count = torch.zeros(V * V).index_add_(0, cell, torch.ones_like(scores.flatten()))
    return (total / count).view(V, V)


@torch.no_grad()
def query_key_parts(model, sel, tokens, important=None) -> dict:
    """Which writers the selecting head's query (at SEP) and keys read: for each part of the residual stream
    (embeddings, layer 0's head, MLP 0, and MLP 0's important neurons alone, the others at their mean), the
    share of lists on which that part alone, on the query side (keys as they are) or the key side (query as it
    is), gives the same top-scoring key as the real scores. Layer 1 heads only."""
    layer, head = sel
    if layer != 1:
        raise ValueError("query_key_parts reads a layer-1 head")
    attn = model.blocks[1].attn
    names = ["hook_embed", "hook_pos_embed", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out",
             "blocks.0.mlp.hook_post"]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    parts = {"embeddings": cache["hook_embed"] + cache["hook_pos_embed"], "layer-0 head": cache["blocks.0.hook_attn_out"],
             "MLP 0": cache["blocks.0.hook_mlp_out"]}
    if important is not None:
        post = cache["blocks.0.mlp.hook_post"]
        kept = post.mean(0, keepdim=True).expand_as(post).clone()
        kept[..., important] = post[..., important]
        parts["MLP 0, important neurons only"] = kept @ model.blocks[0].mlp.W_out + model.blocks[0].mlp.b_out
    whole = parts["embeddings"] + parts["layer-0 head"] + parts["MLP 0"]
    q = whole[:, -1] @ attn.W_Q[head] + attn.b_Q[head]  # [batch, d_head]
    k = whole[:, :-1] @ attn.W_K[head] + attn.b_K[head]  # [batch, n, d_head]
    top = torch.einsum("be,bke->bk", q, k).argmax(-1)
    out = {}
    for name, part in parts.items():
        q_part = part[:, -1] @ attn.W_Q[head]
        k_part = part[:, :-1] @ attn.W_K[head]
        out[name] = {"query": (torch.einsum("be,bke->bk", q_part, k).argmax(-1) == top).float().mean().item(),
                     "key": (torch.einsum("be,bke->bk", q, k_part).argmax(-1) == top).float().mean().item()}
    return out


def median_thresholds(reading) -> torch.Tensor:
    """The sorted thresholds of the important neurons that read 'the median is on my side of t' (steps turning
    on at k + 1 values): the cuts MLP 0 can place the median between."""
    cuts = [reading["fits"]["step"]["threshold"][j].item() for j in reading["important"].tolist()
            if near_median(reading, j)]
    return torch.tensor(sorted(set(cuts)))


def interval_of(values, cuts):
    """The index of the interval between consecutive cuts that each value falls in."""
    return torch.bucketize(values.float(), cuts)


@torch.no_grad()
def snapping(model, sel, suite, reading, predictions) -> dict:
    """The hypothesis 'MLP 0 places the median between two of its thresholds; the head snaps to the value the
    list holds there'. Per family: the share of lists whose median is the only distinct value of the list in its
    interval ('alone'), the one-key algorithm's agreement with the model where the median is alone and where it
    is not, and the model's own accuracy in both cases."""
    cuts = median_thresholds(reading)
    out = {}
    for family, (tokens, targets) in suite.items():
        tokens, targets, answers = tokens[:20000], targets[:20000], predictions[family][:20000]
        values = tokens[:, :-1]
        same = interval_of(values, cuts) == interval_of(targets, cuts)[:, None]
        alone = ~(same & (values != targets[:, None])).any(1)
        picked = values[torch.arange(len(values)), C.select_and_copy_from_activations(model, tokens, *sel)[1]]
        agree, right = picked == answers, answers == targets
        share = lambda mask, where: mask[where].float().mean().item() if where.any() else float("nan")
        out[family] = {"alone": alone.float().mean().item(), "agree alone": share(agree, alone),
                       "agree shared": share(agree, ~alone), "accuracy alone": share(right, alone),
                       "accuracy shared": share(right, ~alone)}
    return suite.like(out)


# --- tables for the notebook ---------------------------------------------------------------------------------

def uniformity_table(uniformity) -> str:
    lines = ["| family | layer 0's SEP attention: largest deviation from uniform (mean over lists) | MLP 0 pre-activations "
             "rebuilt with uniform attention: relative squared error |", "|---|---:|---:|"]
    lines += [f"| {family} | {deviation:.4f} | {error:.5f} |" for family, (deviation, error) in uniformity.items()]
    return "\n".join(lines)


def tests_table(tests) -> str:
    """Markdown from reading_tests: per family, (a) the substituted model and (b) the resampled MLP 0 output."""
    lines = ["| family | model accuracy | (a) important betas their fitted shapes: accuracy | loss recovered | "
             f"(a') shapes, exact within {TRANSITION} of each threshold: accuracy | loss recovered | (b) loss, MLP 0 "
             "from a list with the same median | (b) loss, from any list | (b) share of the control's loss avoided |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for family, sub in tests["substituted"].items():
        res = tests["resampled"][family]
        lines.append(f"| {family} | {sub['model accuracy']:.2%} | {sub['accuracy']:.2%} | {sub['loss recovered']:.2%} | "
                     f"{sub['refined accuracy']:.2%} | {sub['refined loss recovered']:.2%} | "
                     f"{res['same median']:.4f} | {res['any list']:.3f} | {res['kept']:.2%} |")
    return "\n".join(lines)


def parts_table(parts) -> str:
    lines = ["| part of the residual stream | query side: the part alone picks the real top key | key side: the part "
             "alone picks it |", "|---|---:|---:|"]
    lines += [f"| {name} | {v['query']:.2%} | {v['key']:.2%} |" for name, v in parts.items()]
    return "\n".join(lines)


def snapping_table(snap) -> str:
    lines = ["| family | median alone in its interval | one-key algorithm agrees: alone | ... not alone | model "
             "accuracy: alone | ... not alone |", "|---|---:|---:|---:|---:|---:|"]
    pct = lambda x: "-" if x != x else f"{x:.2%}"
    lines += [f"| {family} | {pct(v['alone'])} | {pct(v['agree alone'])} | {pct(v['agree shared'])} | "
              f"{pct(v['accuracy alone'])} | {pct(v['accuracy shared'])} |" for family, v in snap.items()]
    return "\n".join(lines)


def agreement_table(suite, mine: dict, theirs: dict) -> str:
    """Markdown: per family, how often two models give the same answer (family_predictions of each)."""
    lines = ["| family | same answer |", "|---|---:|"]
    lines += [f"| {family} | {(mine[family] == theirs[family]).float().mean().item():.2%} |" for family in suite]
    return "\n".join(lines)


def side_by_side(names: dict, size: int = 300) -> str:
    """Markdown: MLP 0's kinds table for each model of {label: model} (read_mlp0 on `size` lists each)."""
    parts = []
    for label, m in names.items():
        try:
            parts.append(f"**{label}, MLP 0**\n\n" + kinds_table(read_mlp0(m, size=size)))
        except ValueError as error:
            parts.append(f"**{label}**: MLP 0 not read ({error})")
    return "\n\n".join(parts)


@torch.no_grad()
def handbuilt_claims(suite, built: dict, learnt: dict) -> list:
    """Section 5e's claims from both models' answers on `suite` (shared.tasks.family_predictions of the hand-built
    and of the trained model): the hand-built model's accuracy, and how often it gives the trained model's answer
    on the lists the trained model gets right."""
    accuracy = {f: (built[f] == suite[f][1]).float().mean().item() for f in suite}
    families = [f for f in accuracy if f != suite.uniform_label]
    weakest = min(families, key=accuracy.get)
    right = torch.cat([learnt[f] == suite[f][1] for f in suite])
    same = torch.cat([built[f] == learnt[f] for f in suite])
    return [
        Claim("handbuilt_uniform", f"hand-built model: accuracy on {suite.uniform_label} lists",
              accuracy[suite.uniform_label], ">=", 0.999, "%"),
        Claim("handbuilt_families", f"... on its weakest family ({weakest})", accuracy[weakest], ">=", 0.99, "%"),
        Claim("handbuilt_agrees", "hand-built and trained give the same answer where the trained model is right",
              same[right].float().mean().item(), ">=", 0.99, "%"),
    ]
