"""MLP 0 of a find_median model, neuron by neuron: how an average of the list becomes its median.

Layer 0's head attends (nearly) evenly at SEP, so each neuron j of MLP 0 sees, there,

    pre_j = c_j + sum_i beta_j(x_i)        beta_j(v) = token[v, j] / (n + 1)    (shared.neurons.neuron_terms)

c_j holds the biases, SEP's own token and position, and the positions' terms (constant at uniform attention).
`read_mlp0` fits a shape to every beta_j (shared.neurons.fit_shapes), ranks the neurons by the loss their
mean-ablation at SEP costs, and for a step at threshold t with scale s (beta_j ~ offset + s [v > t]) reads
pre_j ~ c_j + n offset + s #(x > t): the ReLU turns on once at least `turn_on` values lie on the side of t the
neuron counts (above when s > 0, below when s < 0). A neuron that turns on at k + 1 = (n + 1) / 2 values fires
iff the median lies on its side of t: MLP 0 writes the median as a set of threshold indicators.
`substitution_tests` and `resample_tests` then test that reading causally: every important neuron's beta replaced
by its fitted shape inside the trained model, and MLP 0's output at SEP taken from a list with the same median.
"""
import torch
import torch.nn.functional as F

from shared.ablation import Patch, component_patch, run_from, run_patched
from shared.faithfulness import recovered
from shared.neurons import best_shape, fit_shapes, loss_kept, neuron_terms, token_response_patches, uniform_pattern
from shared.tables import markdown_table, num, pct
from shared.tasks import loss_and_accuracy, to_tokens, uniform_values

from .dataset import answer, balanced, same_middle

IMPORTANT = 0.01  # a neuron is important when mean-ablating it alone at SEP costs this much loss on uniform lists
TRANSITION = 3  # the refined reading keeps a step's exact response within this many values of its threshold


def drawn_lists(draw, size, n, V, seed):
    """(tokens, medians) of `size` fresh lists from draw(size, n, V, gen): uniform_values, dataset.balanced."""
    values = draw(size, n, V, torch.Generator().manual_seed(seed))
    return to_tokens(values, V), answer(values)


@torch.no_grad()
def neuron_importance(model, tokens, targets, chunk: int = 8) -> torch.Tensor:
    """[d_mlp]: the loss increase when each neuron of MLP 0 alone is mean-ablated at SEP (its mean over tokens).
    Only SEP's residual stream changes, so each ablation reruns the blocks after MLP 0 from the cached stream
    (shared.ablation.run_from), `chunk` neurons at a time."""
    names = ["blocks.0.hook_resid_post", "blocks.0.mlp.hook_post"]
    logits, cache = model.run_with_cache(tokens, names_filter=names, last_only=True)
    base = F.cross_entropy(logits[:, -1], targets).item()
    post, resid = cache["blocks.0.mlp.hook_post"][:, -1], cache["blocks.0.hook_resid_post"]
    shift = (post.mean(0) - post)[:, :, None] * model.blocks[0].mlp.W_out  # [batch, d_mlp, d_model] at SEP
    costs = []
    for js in torch.arange(model.cfg.d_mlp).split(chunk):
        moved = resid.repeat(len(js), 1, 1)
        moved[:, -1] += shift[:, js].transpose(0, 1).reshape(-1, resid.shape[-1])
        out = run_from(model, 1, moved)[:, -1].view(len(js), len(tokens), -1)
        costs += [F.cross_entropy(o, targets).item() - base for o in out]
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


def kind_parameters(reading, name, mine) -> str:
    """The range of the fitted parameters of the important neurons `mine` of one kind."""
    fits = reading["fits"]
    if name == "step":
        on = reading["turn_on"][mine]
        counts = ", ".join(f"{(on == c).sum().item()} at {c}" for c in sorted(set(on.tolist())))
        t = fits["step"]["threshold"][mine]
        return f"thresholds {t.min():.1f}..{t.max():.1f}; turn on at (count on its side): {counts}"
    if name == "bump":
        return f"centres {fits['bump']['centre'][mine].min():.1f}..{fits['bump']['centre'][mine].max():.1f}"
    return f"slopes {fits['ramp']['scale'][mine].min():.3f}..{fits['ramp']['scale'][mine].max():.3f}"


def kinds_table(reading) -> str:
    """Markdown: per kind of shape, how many important neurons, the median R^2 of their fit, and their parameters."""
    neurons, rows = reading["important"].tolist(), []
    for name in ("step", "ramp", "bump"):
        mine = [j for j in neurons if reading["kind"][j] == name]
        r2 = reading["fits"][name]["r2"][mine] if mine else None
        rows.append([name, len(mine), f"{r2.median():.3f} ({r2.min():.3f})" if mine else "-",
                     kind_parameters(reading, name, mine) if mine else "-"])
    return markdown_table(["kind", "important neurons", "R^2 of the fit, median (min)", "parameters"], rows, "lrrl")


def neuron_meaning(reading, j: int) -> str:
    """What neuron j reads as: 'median > 45', '>= 3 values below 30.5', or '-' for a neuron that is no step."""
    t, on, side = reading["fits"]["step"]["threshold"][j].item(), reading["turn_on"][j].item(), reading["side"][j].item()
    if near_median(reading, j):
        return f"median {'>' if side > 0 else '<'} {t:g}"
    return f">= {on} values {'above' if side > 0 else 'below'} {t:g}" if reading["kind"][j] == "step" else "-"


def neuron_table(reading, top: int = 12) -> str:
    """Markdown: the `top` neurons by importance, each with its shape and what it computes."""
    fits, rows = reading["fits"], []
    for j in reading["order"][:top].tolist():
        kind, step = reading["kind"][j], fits["step"]
        t, on, side = step["threshold"][j].item(), reading["turn_on"][j].item(), reading["side"][j].item()
        rows.append([j, f"{reading['importance'][j]:.3f}", kind, f"{fits[kind]['r2'][j]:.3f}", f"{t:g}",
                     "above t" if side > 0 else "below t", on, neuron_meaning(reading, j)])
    return markdown_table(["neuron", "loss when ablated", "kind", "R^2", "threshold t", "counts values", "turns on at",
                           "reads as"], rows, "rrlrrlrl")


@torch.no_grad()
def attention_uniformity(model, suite) -> dict:
    """{family: (largest deviation of layer 0's SEP attention from 1/(n+1), mean over lists; relative squared
    error of MLP 0's pre-activations at SEP rebuilt with uniform attention)}: how far the averaging reading
    holds on each family."""
    terms = neuron_terms(model)
    out = {}
    for family, (tokens, _) in suite.items():
        tokens = tokens[:500]
        _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern", "blocks.0.mlp.hook_pre"],
                                        stop_at_layer=1)
        pattern = cache["pattern", 0][:, :, -1]
        seen = tokens.shape[1]
        deviation = (pattern - 1 / seen).abs().amax((1, 2)).mean().item()
        pre = cache["pre", 0][:, -1]
        rebuilt = terms.pre(tokens, uniform_pattern(tokens, model.cfg.n_heads))
        error = ((rebuilt - pre) ** 2).mean().item() / pre.var(0).mean().clamp_min(1e-12).item()
        out[family] = (deviation, error)
    return out


def substituted_responses(model, reading):
    """Two replacements for MLP 0's token term [d_vocab, d_mlp]: every important neuron's beta as its fitted shape,
    and the refined reading, each step's exact response kept within TRANSITION values of its threshold."""
    V, n = reading["V"], reading["n"]
    shape, refined = neuron_terms(model).token[0].clone(), neuron_terms(model).token[0].clone()
    values = torch.arange(V, dtype=torch.float)
    for j in reading["important"].tolist():
        fitted = reading["fits"][reading["kind"][j]]["fitted"][j].clone()
        shape[:V, j] = fitted * (n + 1)
        if reading["kind"][j] == "step":
            near = (values - reading["fits"]["step"]["threshold"][j]).abs() <= TRANSITION
            fitted[near] = reading["beta"][j][near]
        refined[:V, j] = fitted * (n + 1)
    return shape, refined


@torch.no_grad()
def substitution_tests(model, reading, suite, size: int = 500, uniform_size: int = 10000) -> dict:
    """(a) The fitted shapes put in place of the important neurons' betas inside the trained model (everything else
    as trained; shared.neurons.token_response_patches): accuracy on every list of each family (the first
    `uniform_size` of the fresh uniform ones), loss recovered against MLP 0's output mean-ablated (on the first
    `size`), and the same for the refined reading."""
    shape, refined = substituted_responses(model, reading)
    run = lambda tokens, response: run_patched(model, tokens, token_response_patches(model, tokens, response))[:, -1]
    out = {}
    for family, (tokens, targets) in suite.first(1000, uniform_size).items():
        accuracy = loss_and_accuracy(run(tokens, shape), targets)[1]
        x, y = tokens[:size], targets[:size]
        loss, model_accuracy = loss_and_accuracy(model(x, last_only=True)[:, -1], y)
        ablated = loss_and_accuracy(run_patched(model, x, [component_patch(model, "MLP 0")])[:, -1], y)[0]
        shaped, (refined_loss, refined_accuracy) = loss_and_accuracy(run(x, shape), y)[0], loss_and_accuracy(run(x, refined), y)
        out[family] = {"accuracy": accuracy, "model accuracy": model_accuracy, "model loss": loss,
                       "loss recovered": recovered(shaped, ablated, loss), "refined accuracy": refined_accuracy,
                       "refined loss recovered": recovered(refined_loss, ablated, loss)}
    return suite.like(out)


MIDDLES = {"the median": 0, "the median and its sorted neighbours": 1, "the five middle values": 2}


@torch.no_grad()
def resample_tests(model, suite, seed: int = 0, size: int = 500) -> dict:
    """(b) MLP 0's output at SEP taken from another list that shares the middle of the sorted list (MIDDLES: the
    median alone, with its two neighbours, the five middle values; find_median.dataset.same_middle), and from any
    other list (the control): the loss, and the share of the control's loss increase that sharing avoids (1: MLP 0
    hands on that and nothing else)."""
    hook, V = "blocks.0.hook_mlp_out", model.cfg.d_vocab_out
    out = {}
    for family, (tokens, targets) in suite.items():
        x, y, gen = tokens[:size], targets[:size], torch.Generator().manual_seed(seed)
        loss = loss_and_accuracy(model(x, last_only=True)[:, -1], y)[0]

        def swapped(donors):
            donor = model.run_with_cache(to_tokens(donors, V), names_filter=hook)[1][hook][:, -1]
            return loss_and_accuracy(run_patched(model, x, [Patch(hook, (slice(None), -1), donor)])[:, -1], y)[0]
        control = swapped(uniform_values(len(x), x.shape[1] - 1, V, gen))
        row = {"model loss": loss, "any list": control}
        for name, keep in MIDDLES.items():
            row[name] = swapped(same_middle(x[:, :-1], keep, V, gen))
            row[f"{name} kept"] = loss_kept(loss, row[name], control)
        out[family] = row
    return suite.like(out)


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


def snapping(suite, reading, scores, predictions) -> dict:
    """The hypothesis 'MLP 0 places the median between two of its thresholds; the head snaps to the value the
    list holds there'. Per family: the share of lists whose median is the only distinct value of the list in its
    interval ('alone'), the one-key algorithm's agreement with the model (scores: the selecting head's, per family)
    where the median is alone and where it is not, and the model's own accuracy in both cases."""
    cuts = median_thresholds(reading)
    out = {}
    for family, (tokens, targets) in suite.items():
        values, answers = tokens[:, :-1], predictions[family]
        same = interval_of(values, cuts) == interval_of(targets, cuts)[:, None]
        alone = ~(same & (values != targets[:, None])).any(1)
        picked = values[torch.arange(len(values)), scores[family][:, :-1].argmax(-1)]
        agree, right = picked == answers, answers == targets
        share = lambda mask, where: mask[where].float().mean().item() if where.any() else float("nan")
        out[family] = {"alone": alone.float().mean().item(), "agree alone": share(agree, alone),
                       "agree shared": share(agree, ~alone), "accuracy alone": share(right, alone),
                       "accuracy shared": share(right, ~alone)}
    return suite.like(out)


# --- tables for the notebook ---------------------------------------------------------------------------------

def uniformity_table(uniformity) -> str:
    return markdown_table(["family", "layer 0's SEP attention: largest deviation from uniform (mean over lists)",
                           "MLP 0 pre-activations rebuilt with uniform attention: relative squared error"],
                          [[family, f"{d:.4f}", f"{e:.5f}"] for family, (d, e) in uniformity.items()])


def tests_table(substituted, resampled) -> str:
    """Markdown: per family, (a) the substituted model and (b) the resampled MLP 0 output (every key matched)."""
    keys = [k for k in next(iter(resampled.values())) if k.endswith(" kept")]
    header = ["family", "model accuracy", "(a) important betas their fitted shapes: accuracy", "loss recovered",
              f"(a') shapes, exact within {TRANSITION} of each threshold: accuracy", "loss recovered",
              "(b) loss, MLP 0 from any list"] + [f"(b) MLP 0 from a list that shares {k[:-5]}: loss, share of the "
                                                 "control's loss avoided" for k in keys]
    rows = []
    for family, sub in substituted.items():
        res = resampled[family]
        rows.append([family, pct(sub["model accuracy"]), pct(sub["accuracy"]), pct(sub["loss recovered"]),
                     pct(sub["refined accuracy"]), pct(sub["refined loss recovered"]), num(res["any list"])] +
                    [f"{res[k[:-5]]:.4f}, {pct(res[k])}" for k in keys])
    return markdown_table(header, rows)


def parts_table(parts) -> str:
    return markdown_table(["part of the residual stream", "query side: the part alone picks the real top key",
                           "key side: the part alone picks it"],
                          [[name, pct(v["query"]), pct(v["key"])] for name, v in parts.items()])


def snapping_table(snap) -> str:
    return markdown_table(["family", "median alone in its interval", "one-key algorithm agrees: alone",
                           "one-key algorithm agrees: not alone", "model accuracy: alone", "model accuracy: not alone"],
                          [[family, pct(v["alone"]), pct(v["agree alone"]), pct(v["agree shared"]),
                            pct(v["accuracy alone"]), pct(v["accuracy shared"])] for family, v in snap.items()])


def side_by_side(readings: dict) -> str:
    """Markdown: MLP 0's kinds table for each reading of {label: read_mlp0(...) or the reason it could not be
    read}."""
    return "\n\n".join(f"**{label}, MLP 0**\n\n" + kinds_table(r) if isinstance(r, dict) else
                        f"**{label}**: MLP 0 not read ({r})" for label, r in readings.items())
