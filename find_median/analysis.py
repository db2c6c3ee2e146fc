"""find_median's analysis, one function per section of analyze.ipynb: each section measures once into the record,
and `hypotheses` / `measurements` read the record, so the notebook and the tests state the same thing.

`measure(model, suite, ...)` runs every section on whatever model is loaded: the averaging head is the layer-0 head
whose SEP attention is most uniform, the selecting head the later head whose SEP attention lands most on the
median. A model without such a head (one layer, say) gets its rows "not measured here", with the reason.
"""
from pathlib import Path

import torch

from shared import CheckpointError, load_checkpoint
from shared import circuits as C
from shared import faithfulness as faith
from shared import measures as M
from shared.ablation import ablated_accuracy, path_ablated_accuracy
from shared.claims import (ALMOST_ALL, BAR_FAMILY, BAR_UNIFORM, COMPLETE, MOST, Claim, Measurement, accuracy_claims,
                           faithfulness_claim, formation_claim, formation_measurement)
from shared.components import components, head_name, mlp_name
from shared.progress import accuracies, attention_on_answer, composition, formation_record, head_ablations
from shared.tables import markdown_table, num, pct
from shared.tasks import answer_positions, collect_mistakes, evaluation_suite, family_answers, to_tokens, uniform_values
from shared.verify import verify

from . import mlp0 as mlp0_reading
from .dataset import TASK, median_swap_pairs, task

EDGE = 8  # "near the ends of the range": medians and OV rows within EDGE values of 0 or V-1 (V // 4 for V < 32)
SAMPLE = 5000  # uniform lists for the attention, ablation, direct-logit and composition measures


@torch.no_grad()
def measure_heads(model, suite) -> dict:
    """Section 2: the averaging head (the layer-0 head whose full QK scores from SEP spread least) and how evenly
    it attends (the largest relative deviation of its SEP attention from 1/(n+1), over lists of every family); the
    selecting head (the later head most on the median) and its share of SEP's attention there."""
    few, few_targets = suite.sample(SAMPLE)
    n = few.shape[1] - 1
    spreads = {h: M.qk_spread(model, h, n) for h in range(model.cfg.n_heads)}
    avg = (0, min(spreads, key=spreads.get))
    sel, shares = C.head_most_on(model, few, answer_positions(few, few_targets), range(1, model.cfg.n_layers))
    deviation = 0.0
    for tokens, _ in suite.values():
        _, cache = model.run_with_cache(tokens[:1000], names_filter="blocks.0.attn.hook_pattern", stop_at_layer=1)
        deviation = max(deviation, (cache["pattern", 0][:, avg[1], -1] * (n + 1) - 1).abs().max().item())
    record = {"avg": avg, "sel": sel, "A": head_name(*avg), "S": head_name(*sel) if sel else None,
              "every head on the median": shares, "avg spread": spreads[avg[1]], "avg deviation": deviation,
              "avg on median": shares[avg].item(), "median share": answer_positions(few, few_targets).float().sum(1)
              .mean().item() / (n + 1), "sel on median": shares[sel].item() if sel else None}
    if sel is not None:
        _, cache = model.run_with_cache(few, names_filter=f"blocks.{sel[0]}.attn.hook_pattern")
        top = cache["pattern", sel[0]][:, sel[1], -1, :-1].argmax(-1)
        record["sel top is median"] = (few[torch.arange(len(few)), top] == few_targets).float().mean().item()
    return record


@torch.no_grad()
def measure_components(model, suite, pairs, record) -> dict:
    """Section 3: accuracy with each head and MLP mean-ablated; the heads' outputs patched clean into corrupted runs
    (at SEP, and at the changed position); how often direct logits give the model's answer."""
    few, few_targets = suite.sample(SAMPLE)
    cfg, n, A, S = model.cfg, few.shape[1] - 1, record["A"], record["S"]
    has_mlp, last = cfg.d_mlp is not None, cfg.n_layers - 1
    ablate = lambda name: ablated_accuracy(model, few, few_targets, [name])
    z = lambda lh, position: M.patched_fraction(model, pairs, f"blocks.{lh[0]}.attn.hook_z", position, lh[1])
    changed = (pairs[0] != pairs[1]).float().argmax(-1)[0].item()
    heads = [record["avg"]] + ([record["sel"]] if record["sel"] else [])
    at_changed = [v for v in (z(lh, changed) for lh in heads) if v is not None]
    layer0 = [head_name(0, h) for h in range(cfg.n_heads)] + ([mlp_name(0)] if has_mlp else [])
    agree = lambda names: M.direct_logit_agreement(model, few, names)
    stages = ["hook_embed"] + [f"blocks.{l}.hook_{s}" for l in range(cfg.n_layers)
                               for s in (("resid_mid", "resid_post") if has_mlp else ("resid_post",))]
    return {"patch stages": stages, "patch sweep": torch.stack([C.patch_sweep(model, *pairs, s) for s in stages]),
            "ablated avg": ablate(A), "ablated sel": ablate(S) if S else None,
            "ablated mlp0": ablate(mlp_name(0)) if has_mlp else None,
            "ablated last mlp": ablate(mlp_name(last)) if has_mlp and last > 0 else None,
            "patch sel sep": z(record["sel"], n) if S else None, "patch avg sep": z(record["avg"], n),
            "changed position": changed, "patch changed": max(at_changed) if at_changed else None,
            "dla sel": agree([S]) if S else None,
            "dla sel mlp": agree([S] + ([mlp_name(last)] if has_mlp else [])) if S else None,
            "dla layer0": max(agree([part]) for part in layer0) if last > 0 else None}


@torch.no_grad()
def measure_paths(model, suite, record) -> dict:
    """Section 4: each direct path from the averaging head into the selecting head, its composition score over
    random heads' and the accuracy with only that path mean-ablated; then all three at once."""
    if record["sel"] is None:
        return {"paths": None}
    few, few_targets = suite.sample(SAMPLE)
    A, S = record["A"], record["S"]
    paths = {kind: {"score": (C.composition_scores(model, kind)[(*record["avg"], *record["sel"])]
                              / C.composition_baseline(model.cfg, kind)).item(),
                    "accuracy": path_ablated_accuracy(model, few, few_targets, A, [f"{S}.{kind.lower()}"], few)}
             for kind in "QKV"}
    paths["QKV"] = {"accuracy": path_ablated_accuracy(model, few, few_targets, A, [f"{S}.{k}" for k in "qkv"], few)}
    return {"paths": paths}


@torch.no_grad()
def selecting_scores(model, suite, sel, kept=None) -> dict:
    """{family: the selecting head's pre-softmax scores from SEP [batch, n + 1]}: what its top key and the one-key
    algorithm read, measured once for every family (kept: the residual stream its layer reads, per family, when
    the correctness pass kept it)."""
    stream = lambda family: kept[family] if kept and sel[0] == model.cfg.n_layers - 1 else None
    return suite.like({family: C.sep_scores(model, tokens, *sel, stream(family)) for family, (tokens, _) in suite.items()})


@torch.no_grad()
def measure_select_copy(model, suite, record) -> dict:
    """Section 5: select-then-copy from the selecting head (its top-scoring key, then the argmax of its OV row for
    the token there): agreement with the model on uniform lists and on every family, where the misses fall, and
    how much of the OV circuit copies away from the range ends. Also the one-key algorithm ('answer the value at
    the top key') per family, for section 5b."""
    sel = record["sel"]
    if sel is None or C.has_layernorm(model, sel[0]):
        return {"scores": None}
    scores = selecting_scores(model, suite, sel, record.get("kept"))
    V = model.cfg.d_vocab_out
    width = min(EDGE, V // 4)
    ov = M.ov_matrix(model, *sel, suite.sample(SAMPLE)[0])
    rows = torch.arange(width, V - width)
    out = {"scores": scores, "ov": ov, "ov middle": (ov[rows].argmax(-1) == rows).float().mean().item(), "edge": width,
           "ov copying": C.copying_score(ov), "ov note": M.ov_note(model, sel[0]), "one key": {}, "copy": {}}
    out["misses"] = {}
    for family, (tokens, targets) in suite.items():
        picked = tokens[torch.arange(len(tokens)), scores[family][:, :-1].argmax(-1)]
        answers = record["predictions"][family]
        out["one key"][family] = picked == answers
        out["copy"][family] = ov.argmax(-1)[picked] == answers
        miss = ~out["copy"][family]
        out["misses"][family] = ((miss & (picked == targets)).float().mean().item(),
                                 (miss & (picked != targets)).float().mean().item())
    others = suite.others()
    misses = torch.cat([~out["copy"][f] for f in others])
    ys = torch.cat([suite[f][1] for f in others])
    edge = (ys < width) | (ys >= V - width)
    out.update(copy_uniform=out["copy"][suite.uniform_label].float().mean().item(),
               copy_families=(~misses).float().mean().item(),
               copy_edges=(~misses[edge]).float().mean().item() - (~misses[~edge]).float().mean().item())
    return out


@torch.no_grad()
def measure_mlps(model, suite, record, fit_size: int = 10000) -> dict:
    """Section 5b: the share of each MLP's SEP output that a lookup of the median, a linear map of the list's mean
    or of its histogram, or a lookup of the selected value explains (fitted and tested on fresh uniform lists),
    and which writers the last MLP's neurons read."""
    cfg, V, sel = model.cfg, model.cfg.d_vocab_out, record["sel"]
    if cfg.d_mlp is None or record.get("scores") is None:
        return {"explained": None, "last MLP reads": None}
    n = suite.uniform[0].shape[1] - 1
    values = uniform_values(fit_size, n, V, torch.Generator().manual_seed(11))
    tokens = to_tokens(values, V)
    hooks = [f"blocks.{l}.hook_mlp_out" for l in range(cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=hooks + [f"blocks.{sel[0]}.attn.hook_attn_scores"])
    selected = values[torch.arange(fit_size), cache["attn_scores", sel[0]][:, sel[1], -1, :-1].argmax(-1)]
    one_hot = lambda keys: torch.nn.functional.one_hot(keys, V).float()
    features = {"median": one_hot(values.sort(-1).values[:, n // 2]), "mean": values.float().mean(1, keepdim=True),
                "histogram": one_hot(values).sum(1), "selected": one_hot(selected)}
    explained = {l: {k: C.variance_explained(f, cache[h][:, -1]) for k, f in features.items()}
                 for l, h in enumerate(hooks)}
    reads = M.mlp_input_shares(model, tokens[:5000], cfg.n_layers - 1) if cfg.n_layers > 1 else None
    return {"explained": explained, "last MLP reads": reads}


@torch.no_grad()
def measure_faithfulness(model, suite, record, size: int = 500) -> dict:
    """Section 5b: loss recovered (every other path resampled from the same family) by (a) every path with the
    selecting head restricted to the median, (b) the select-then-copy components alone (the last MLP resampled),
    (c) every path with the selecting head restricted to its own top-scoring key."""
    S, cfg = record["S"], model.cfg
    if record.get("scores") is None:
        return {"on median": None, "select-copy components": None, "on top key": None}
    everything = faith.circuit_of(model, components(model))
    n = suite.uniform[0].shape[1] - 1
    top = lambda x, family: torch.nn.functional.one_hot(record["scores"][family][:len(x), :-1].argmax(-1), n).bool()
    on_median = faith.faithfulness_by_family(model, suite, everything,
                                             lambda x, y, family: faith.attend_only(S, answer_positions(x, y)), size=size)
    on_top = faith.faithfulness_by_family(model, suite, everything,
                                          lambda x, y, family: faith.attend_only(S, top(x, family)), size=size)
    parts = [c for c in components(model) if c != mlp_name(cfg.n_layers - 1)]
    select_copy = faith.faithfulness_by_family(model, suite, faith.circuit_of(model, parts), size=size) \
        if cfg.d_mlp else None
    return {"on median": on_median, "select-copy components": select_copy, "on top key": on_top}


@torch.no_grad()
def measure_circuit_figures(model, task, record) -> dict:
    """Section 6's figures: the averaging head's full QK scores from SEP per key value and position (exact), and
    the selecting head's score from real queries of lists with four different medians to keys made of each bare
    token's embedding."""
    n, V, sel = task.n, task.V, record["sel"]
    out = {"avg qk": C.full_qk_circuit(model, record["avg"][1], V, n, range(n))[:, :V]}
    if sel is not None:
        medians = [V // 8, 3 * V // 8, 5 * V // 8, 7 * V // 8]
        values = task.balanced(4000, n, V, torch.Generator().manual_seed(0))
        lists = torch.stack([task.batch(values)[0][task.answer(values) == m][0] for m in medians])
        out.update({"bare medians": medians, "bare scores": C.query_scores_by_key_token(model, lists, *sel)[:, :V]})
    return out


def mlp0_applies(model, sel) -> str:
    """'' when MLP 0 can be read neuron by neuron through one layer-0 head into a layer-1 selecting head, else why
    not."""
    cfg = model.cfg
    if cfg.d_mlp is None:
        return "no MLPs"
    if cfg.normalization_type is not None or cfg.n_heads != 1:
        return "MLP 0 is read through one layer-0 head, without LayerNorm"
    return "" if sel is not None and sel[0] == 1 else "no layer-1 selecting head"


@torch.no_grad()
def measure_mlp0(model, suite, record) -> dict:
    """Sections 5c-5d (find_median.mlp0): MLP 0 read neuron by neuron and tested inside the model, and how the
    selecting head reads it."""
    reason = mlp0_applies(model, record["sel"])
    if reason:
        return {"mlp0": None, "mlp0 note": reason}
    reading = mlp0_reading.read_mlp0(model)
    few, _ = suite.sample(SAMPLE)
    return {"mlp0": reading, "mlp0 note": "", "uniformity": mlp0_reading.attention_uniformity(model, suite),
            "substituted": mlp0_reading.substitution_tests(model, reading, suite),
            "resampled": mlp0_reading.resample_tests(model, suite),
            "score map": mlp0_reading.score_map(model, record["sel"]),
            "parts": mlp0_reading.query_key_parts(model, record["sel"], few, reading["important"]),
            "snapping": mlp0_reading.snapping(suite, reading, record["scores"], record["predictions"])}


@torch.no_grad()
def measure_formation(model, suite, record, snapshots) -> dict:
    """Section 7: accuracy, both heads' attention on the median, their composition scores and each head's ablation
    on every snapshot; the claim compares when the selecting head's attention forms with when near-tie accuracy
    does."""
    if record["sel"] is None:
        return {"snapshots": None, "snapshots note": "no selecting head to watch"}
    families = {suite.label(f): (x[:500], y[:500]) for f in ("uniform", "balanced", "near_tie") for x, y in [suite.of(f)]}
    probe = tuple(t[:1000] for t in suite.of("uniform"))
    groups = [accuracies(families), attention_on_answer(probe), composition(model.cfg, record["avg"], record["sel"]),
              head_ablations([record["A"], record["S"]], probe)]
    return formation_record(snapshots, groups, f"attention on answer: {record['S']}",
                            f"accuracy: {suite.label('near_tie')}")


@torch.no_grad()
def measure_averaging(averaging, suite) -> dict:
    """The averaging baseline: argmax_m -sum|x_i - m| is the median, and the baseline's logits follow that score
    (its OV circuit is close to -|v - m|)."""
    if averaging is None:
        return {"averaging": None}
    tokens, targets = (t[:20000] for t in suite.uniform)
    V = averaging.cfg.d_vocab_out
    ideal = -(tokens[:, :-1, None] - torch.arange(V)).abs().sum(1).float()
    logits = averaging(tokens)[:, -1]
    answers = family_answers(averaging, suite)
    centre = lambda m: (m - m.mean(1, keepdim=True)).flatten()
    kernel = -(torch.arange(V)[:, None] - torch.arange(V)[None, :]).abs().float()
    ov = C.full_ov_circuit(averaging, head=0)[:V]
    corr = lambda a, b: torch.corrcoef(torch.stack([centre(a), centre(b)]))[0, 1].item()
    return {"averaging": True, "averaging answers": answers, "l1 identity": (ideal.argmax(-1) == targets).float().mean().item(),
            "averaging logits": corr(logits, ideal), "averaging ov": corr(ov, kernel),
            "averaging follows": (logits.argmax(-1) == ideal.argmax(-1)).float().mean().item()}


@torch.no_grad()
def measure(model, suite, task, averaging=None, snapshots=None, snapshots_note: str = "", handbuilt=None,
            checkpoint=None) -> dict:
    """Every section's measures on `model`, in the notebook's order, as one record. suite:
    shared.tasks.evaluation_suite(task); averaging: the averaging baseline of the same task shape, if any;
    snapshots: [(step, model)] of this run, or None (snapshots_note: why); handbuilt: the model to compare with
    in section 5e (the hand-built one, or the trained one when the hand-built is loaded); checkpoint: the loaded
    file's path, beside which a program fitted to this run may be kept."""
    pairs = median_swap_pairs(1000, n=task.n, V=task.V, position=task.n // 2)
    record = M.correctness(model, suite, keep=f"blocks.{model.cfg.n_layers - 1}.hook_resid_pre")
    record["suite families"] = suite
    record["verification"] = verify(model, task)
    record.update(measure_averaging(averaging, suite))
    record.update(measure_heads(model, suite))
    record.update(measure_components(model, suite, pairs, record))
    record.update(measure_paths(model, suite, record))
    record.update(measure_select_copy(model, suite, record))
    record.update(measure_circuit_figures(model, task, record))
    record.update(measure_mlps(model, suite, record))
    record.update(measure_faithfulness(model, suite, record))
    record.update(measure_mlp0(model, suite, record))
    record.update(measure_handbuilt(model, handbuilt, task, record.get("mlp0")))
    record.update(measure_program(model, suite, task, record, checkpoint) if record.get("scores") is not None and
                  checkpoint is not None else {"program": None, "program note": "no program for this model"})
    record.update({"snapshots note": snapshots_note, **measure_formation(model, suite, record, snapshots)})
    return record


@torch.no_grad()
def measure_handbuilt(model, other, task, mlp0=None) -> dict:
    """Section 5e: the hand-built model beside the trained one (whichever of the two is loaded, `other` is the
    other) on a suite of their own (10,000 uniform lists and 500 per family: the hand-built model is wide): the
    hand-built model's accuracy, how often the two agree, and MLP 0 read in both (mlp0: the loaded model's
    reading, if already made)."""
    if other is None:
        return {"handbuilt": None}
    small = evaluation_suite(task, size=500, uniform_size=10000, seed=3)
    loaded_is_built = bool(model.metadata.get("handbuilt"))
    built, learnt = (model, other) if loaded_is_built else (other, model)
    correct = M.correctness(built, small)
    both = {"hand-built": correct["answers"], "trained": family_answers(learnt, small)}
    answers = {label: {f: predicted for f, (predicted, _) in found.items()} for label, found in both.items()}
    right = torch.cat([answers["trained"][f] == small[f][1] for f in small])
    same = torch.cat([answers["hand-built"][f] == answers["trained"][f] for f in small])
    readings = {}
    for label, m in (("hand-built", built), ("trained", learnt)):
        try:
            readings[label] = mlp0 if mlp0 and m is model else mlp0_reading.read_mlp0(m, size=300)
        except ValueError as error:
            readings[label] = str(error)
    return {"handbuilt": {"suite": small, "models": {"hand-built": built, "trained": learnt}, "answers": both,
                          "readings": readings, "loaded is hand-built": loaded_is_built},
            "built uniform": correct["accuracy"], "built weakest": correct["weakest family"],
            "built weakest accuracy": correct["weakest accuracy"], "built agrees": same[right].float().mean().item()}


# --------------------------------------------------------------------------------------------------- claims
def head_claims(r) -> list:
    """Sections 2-3: the averaging head averages, the selecting head selects, both are needed, and who writes."""
    A, S, note = r["A"], r["S"] or "a later-layer head", "" if r["S"] else "one layer: no later head"
    needed = lambda key, name, value: Claim(key, f"{name} is needed: mean-ablated, the model is wrong on most lists "
                                            "(accuracy)", value, "<", MOST, "'needed' means most lists go wrong without "
                                            "it", "%", note=note if value is None else "")
    return [
        Claim("selects", f"{S} (the later head most on the median) puts most of SEP's attention on the median, "
              "uniform lists", r["sel on median"], ">", MOST, "'most' means more than half", note=note),
        needed("ablate_avg", A, r["ablated avg"]), needed("ablate_sel", S, r["ablated sel"]),
        needed("ablate_mlp0", "MLP 0", r["ablated mlp0"]),
        Claim("ablate_last_mlp", "the head's copy alone gives most answers: MLP 1 mean-ablated, accuracy",
              r["ablated last mlp"], ">", MOST, "'most' means more than half", "%"),
        Claim("patch_sel_sep", f"{S}'s output at SEP carries the answer: patched clean into a corrupted run it restores "
              "most of the logit difference", r["patch sel sep"], ">", MOST, "'most' means more than half", note=note),
        Claim("dla_sel", f"{S}'s direct logits alone give the model's answer on most lists", r["dla sel"], ">", MOST,
              "'most' means more than half", "%", note=note),
        Claim("dla_sel_mlp", f"{S} and the last MLP write the answer: their direct logits give the model's answer",
              r["dla sel mlp"], ">=", BAR_UNIFORM, "as often as the bar for uniform lists", "%", note=note),
        Claim("dla_layer0", "layer 0 writes no answer: no layer-0 component's direct logits give the model's answer on "
              "most lists", r["dla layer0"], "<", MOST, "'no answer' means not on most lists", "%"),
    ]


def path_claims(r, uniform_accuracy) -> list:
    """Section 4: what the averaging head gives the selecting head goes mostly through MLP 0."""
    paths = r["paths"]
    share = None
    if paths is not None and uniform_accuracy - r["ablated avg"] > 0:
        share = (uniform_accuracy - paths["QKV"]["accuracy"]) / (uniform_accuracy - r["ablated avg"])
    return [Claim("paths_minor", f"what {r['A']} gives {r['S'] or 'the selecting head'} goes mostly elsewhere than the "
                  "direct paths: accuracy lost with its three direct paths into the head mean-ablated, over the accuracy "
                  f"lost with {r['A']} itself mean-ablated", share, "<", MOST, "'mostly elsewhere' means the direct "
                  "paths carry less than half", note="" if paths else "no selecting head")]


def copy_claims(r) -> list:
    """Section 5: select-then-copy is a first reading that misses at the range ends, where the OV rows stop copying."""
    S, note = r["S"] or "the selecting head", "" if r.get("scores") is not None else "no selecting head without LayerNorm"
    get = lambda key: r.get(key) if r.get("scores") is not None else None
    width = r.get("edge", EDGE)
    return [
        Claim("select_copy", f"select-then-copy from {S} (its top key, its OV row's argmax; approximate) agrees with the "
              "model on most uniform lists", get("copy_uniform"), ">", MOST, "'most' means more than half", "%",
              note=note),
        Claim("select_copy_edges", f"its misses gather at the range ends: agreement within {width} of 0 or V-1 minus "
              "agreement in the middle, over every family", get("copy_edges"), "<", 0.0, "'gather' means it agrees "
              "less there", note=note),
        Claim("ov_middle", f"{S}'s full OV circuit copies most values away from the ends: rows {width}..V-{width + 1} "
              "peaking on the attended value", get("ov middle"), ">", MOST, "'most' means more than half", "%",
              note=note or r.get("ov note", "")),
    ]


def averaging_claims(r) -> list:
    """Section 1: the identity behind averaging, and the averaging baseline following it."""
    if not r.get("averaging"):
        return []
    return [
        Claim("l1_median", "argmax_m of -sum|x_i - m| is the median (the identity behind averaging), uniform lists",
              r["l1 identity"], ">=", 1.0, "an identity holds on every list", "%"),
        Claim("averaging_logits", "the averaging baseline's logits follow -sum|x_i - m|: the share of their variance "
              "it explains (r^2)", r["averaging logits"] ** 2, ">=", ALMOST_ALL, "'follow' means explains at least 90%"),
        Claim("averaging_ov", "the baseline's full OV circuit is -|v - m| up to a constant per row: the share of its "
              "variance -|v - m| explains (r^2)", r["averaging ov"] ** 2, ">=", ALMOST_ALL,
              "'is' means explains at least 90%"),
        Claim("averaging_follows", "the baseline answers argmax -sum|x_i - m|", r["averaging follows"], ">=",
              BAR_UNIFORM, "as often as the bar for uniform lists", "%"),
    ]


def mlp_claims(r) -> list:
    """Section 5b: MLP 0 computes the median from the average; MLP 1 reads the selecting head's copy and writes the
    median; restricting the selecting head to the median keeps the model's loss."""
    explained, reads, S = r["explained"], r["last MLP reads"], r["S"] or "the selecting head"
    note = "" if explained else "no MLPs, or no selecting head without LayerNorm"
    e = lambda layer, key: explained[layer][key] if explained and layer in explained else None
    last = max(explained) if explained else None
    head_share = reads[r["S"]] if reads and r["S"] in reads else None
    others = max((v for k, v in reads.items() if k != r["S"]), default=None) if reads else None
    not_linear = e(0, "median") - e(0, "histogram") if explained else None
    head_most = head_share - others if None not in (head_share, others) else None
    return [
        Claim("mlp0_median", "MLP 0's SEP output is mostly a function of the median: variance a lookup of the median "
              "explains", e(0, "median"), ">", MOST, "'mostly' means more than half", note=note),
        Claim("mlp0_not_linear", "MLP 0 does not just pass the average on: a lookup of the median explains more of its "
              "SEP output than a linear map of the list's histogram (what layer 0's average holds): the difference",
              not_linear, ">", 0.0, "'more than' means a positive difference", note=note),
        Claim("mlp_last_median", f"MLP {last}'s SEP output is mostly a function of the median too: variance a lookup of "
              "the median explains", e(last, "median") if last else None, ">", MOST, "'mostly' means more than half",
              note=note),
        Claim("mlp_last_reads_head", f"MLP {last}'s neurons read mostly {S}'s copy: the share of their pre-activation "
              f"variance at SEP that {S}'s output alone explains", head_share, ">", MOST,
              "'mostly' means more than half", note=note),
        Claim("mlp_last_reads_head_most", f"MLP {last}'s neurons read {S}'s copy more than any other writer: the "
              f"share {S}'s output explains minus the largest share another earlier component's explains", head_most,
              ">", 0.0, "'more than' means a positive difference", note=note),
        faithfulness_claim(r["on median"], f"every path, {S} attending only to the median", "faithful", note=note),
    ]


def mlp0_claims(r) -> list:
    """Sections 5c-5d: MLP 0 is a bank of step neurons next to the median, its steps stand in for it, it hands on
    the median, and the selecting head's keys read it."""
    reading, note = r.get("mlp0"), r.get("mlp0 note", "")
    value = {}
    if reading:
        summary, sub, res = mlp0_reading.step_summary(reading), r["substituted"], r["resampled"]
        weakest = sub.weakest("accuracy")
        value = {"attention": max(e for _, e in r["uniformity"].values()), "steps": summary["step_share"],
                 "fit": summary["step_r2"], "next": mlp0_reading.median_indicator_share(reading, within=1),
                 "sub": sub[sub.uniform_label]["accuracy"], "worst": sub[weakest]["accuracy"], "weakest": weakest,
                 "same": res[res.uniform_label]["the median and its sorted neighbours kept"],
                 "key": r["parts"]["MLP 0"]["key"]}
    claim = lambda key, text, name, op, threshold, why, unit="": Claim(key, text, value.get(name), op, threshold, why,
                                                                        unit, note=note)
    return [
        claim("mlp0_uniform_attention", "MLP 0's input at SEP is (nearly) linear in the list's histogram: rebuilt from "
              "the weights with layer 0 attending uniformly, the largest relative squared error over the families",
              "attention", "<=", 1 - ALMOST_ALL, "'nearly' means at most a tenth of the variance missed"),
        claim("mlp0_steps", "MLP 0's important neurons are steps: the share best fitted by a step", "steps", ">=", 1.0,
              "'are steps' means every one", "%"),
        claim("mlp0_step_fit", "the steps fit their neurons' responses: median R^2", "fit", ">=", ALMOST_ALL,
              "'fit' means explain at least 90%"),
        claim("mlp0_next_to_median", "most important neurons test an order statistic next to the median (steps turning "
              "on at k, k + 1 or k + 2 values on their side)", "next", ">", MOST, "'most' means more than half", "%"),
        claim("mlp0_substituted", "the fitted steps stand in for the important neurons on uniform lists: substituted "
              "inside the model, accuracy on 10,000 fresh uniform lists", "sub", ">=", BAR_UNIFORM,
              "'stand in' means keeping the bar", "%"),
        claim("mlp0_hands_on_middle", "MLP 0 hands layer 1 the median and its two sorted neighbours and nothing else: "
              "its SEP output taken from a list with the same three middle values avoids the any-list control's loss "
              "increase, uniform lists", "same", ">=", COMPLETE, "'nothing else' means all but 1% of the loss is "
              "avoided", "%"),
        claim("l1_key_mlp0", "the selecting head's keys read MLP 0 at each key's own position: that part alone picks "
              "the real top key on most lists", "key", ">", MOST, "'most' means more than half", "%"),
    ]


def handbuilt_claims(r) -> list:
    """Section 5e: the hand-built model is right, and agrees with the trained one where that is right."""
    note = "" if r.get("handbuilt") else "no model of this task shape to compare with"
    get = lambda key: r.get(key) if r.get("handbuilt") else None
    return [
        Claim("handbuilt_uniform", "the hand-built model is right on 10,000 fresh uniform lists", get("built uniform"),
              ">=", BAR_UNIFORM, "the bar for uniform lists", "%", note=note),
        Claim("handbuilt_families", f"the hand-built model is right on every family (weakest: {r.get('built weakest')})",
              get("built weakest accuracy"), ">=", BAR_FAMILY, "the bar for every family", "%", note=note),
        Claim("handbuilt_agrees", "the hand-built model gives the trained model's answer wherever the trained model is "
              "right", get("built agrees"), ">=", BAR_UNIFORM, "'wherever' means as often as the bar", "%", note=note),
    ]


def hypotheses(r) -> list:
    """Every hypothesis of the notebook, from the record, in the notebook's order."""
    uniform_accuracy = r["accuracy"]
    return [*accuracy_claims(r), *averaging_claims(r), *head_claims(r), *path_claims(r, uniform_accuracy),
            *copy_claims(r), *mlp_claims(r), *mlp0_claims(r), *handbuilt_claims(r), *program_claims(r),
            formation_claim(r)]


def sorted_neighbour_share(wrong, k) -> float:
    """Of the mistakes (family, values, target, prediction), the share answering a value that sits next to the
    median in sorted order (1.0 when there are none)."""
    near = [w for w in wrong if any(abs(i - k) == 1 for i, v in enumerate(sorted(w[1])) if v == w[3])]
    return len(near) / len(wrong) if wrong else 1.0


def measurements(r) -> list:
    """What the sections show beside their hypotheses, never counted."""
    n = len(r["mistakes"][0][1]) if r["mistakes"] else 0
    found = [Measurement("errors", f"wrong answers over all {r['inputs']:,} inputs of the suite", r["errors"]),
             Measurement("l0_deviation", f"{r['A']}'s SEP attention: the largest relative deviation from 1/(n+1) over "
                         "every key of 1,000 lists of each family", r["avg deviation"]),
             Measurement("near_misses", "of those mistakes, the share answering a sorted neighbour of the median",
                         sorted_neighbour_share(r["mistakes"], n // 2), "%"),
             Measurement("avg_on_median", f"{r['A']}'s SEP attention on the median (the uniform share: "
                         f"{r['median share']:.3f})", r["avg on median"]),
             Measurement("sel_top_is_median", f"lists whose most-attended key of {r['S']} holds the median",
                         r.get("sel top is median"), "%"),
             Measurement("patch_avg_sep", f"{r['A']}'s output at SEP patched: logit difference restored",
                         r["patch avg sep"]),
             Measurement("patch_changed", f"either head's output at the changed position {r['changed position']} "
                         "patched: the larger share restored", r["patch changed"])]
    if r["paths"]:
        found += [Measurement(f"composition_{k}", f"{k}-composition score {r['A']} -> {r['S']} over random heads'",
                              r["paths"][k]["score"]) for k in "QKV"]
        found += [Measurement(f"path_{k}", f"accuracy with only the {k} path {r['A']} -> {r['S']} mean-ablated",
                              r["paths"][k]["accuracy"], "%") for k in ("Q", "K", "V", "QKV")]
    return found + copy_measurements(r) + mlp0_measurements(r) + program_measurements(r) + [formation_measurement(r)]


def copy_measurements(r) -> list:
    if r.get("scores") is None:
        return []
    one_key = {f: agree.float().mean().item() for f, agree in r["one key"].items()}
    worst = min(one_key, key=one_key.get)
    found = [Measurement("select_copy_families", "select-then-copy's agreement on every family's inputs together",
                         r["copy_families"], "%"),
             Measurement("ov_copying", f"{r['S']}'s OV copying score", r["ov copying"]),
             Measurement("one_key_uniform", f"the one-key algorithm ('answer the value at {r['S']}'s top key') agrees "
                         "with the model on uniform lists", one_key[r["scores"].uniform_label], "%"),
             Measurement("one_key_worst", f"the one-key algorithm's agreement on the family where it agrees least "
                         f"({worst})", one_key[worst], "%")]
    if r["explained"]:
        last = max(r["explained"])
        found.append(Measurement("mlp_last_selected", f"variance of MLP {last}'s SEP output a lookup of the value {r['S']} "
                                 "selects explains", r["explained"][last]["selected"]))
    if r["select-copy components"]:
        found.append(Measurement("faithful_select_copy", "the select-then-copy components alone (the last MLP "
                                 "resampled): loss recovered on uniform lists",
                                 r["select-copy components"][r["select-copy components"].uniform_label]["loss recovered"],
                                 "%"))
    return found


def program_measurements(r) -> list:
    if r.get("program") is None:
        return []
    from .explanation import term_shapes
    fid = r["fidelity"]
    worst = max(fid.others(), key=lambda f: fid[f]["attention distance"])
    uniform = fid.uniform_label
    found = [Measurement("program_attention_worst", f"the program's attention distance on the family where it is largest "
                         f"({worst})", fid[worst]["attention distance"]),
             Measurement("program_top_key", "lists whose program top key is the selecting head's, uniform lists",
                         fid[uniform]["same top key"], "%"),
             Measurement("program_top_value", "lists whose program top key holds the same value as the head's, uniform "
                         "lists", fid[uniform]["same top value"], "%"),
             Measurement("program_mistakes_right", "the model's mistakes that the program gets right",
                         None if r["on mistakes"]["program wrong"] is None else 1 - r["on mistakes"]["program wrong"], "%")]
    found += [Measurement(f"program_{name.replace(' ', '_')}", f"the program's {name}", value)
              for name, value in term_shapes(r["program"]).items()]
    return found


def mlp0_measurements(r) -> list:
    reading = r.get("mlp0")
    if not reading:
        return []
    sub, parts, snap = r["substituted"], r["parts"], r["snapping"]
    near = sub.label("near_tie")
    scores = r["score map"]
    rows = [m for m in range(len(scores)) if not torch.isnan(scores[m, m])]
    peaks = torch.stack([torch.nan_to_num(scores[m], nan=-float("inf")).argmax() for m in rows])
    pooled = [v for f, v in snap.items() if f != snap.uniform_label and v["agree shared"] == v["agree shared"]
              and v["agree alone"] == v["agree alone"]]
    weakest = sub.weakest("accuracy")
    res = r["resampled"]
    return [Measurement("mlp0_important", f"neurons of MLP 0 whose mean-ablation alone at SEP costs >= "
                        f"{mlp0_reading.IMPORTANT} loss", len(reading["important"])),
            Measurement("mlp0_substituted_worst", "the fitted steps in place of the important neurons: accuracy on the "
                        f"family where they keep least ({weakest}), the limit of the step reading",
                        sub[weakest]["accuracy"], "%"),
            Measurement("mlp0_same_median", "MLP 0's SEP output from a list with the same median only: share of the "
                        "control's loss avoided, uniform lists", res[res.uniform_label]["the median kept"], "%"),
            Measurement("mlp0_same_middle_near_ties", "MLP 0's SEP output from a list with the same three middle "
                        "values: share of the control's loss avoided on near ties (where the neighbours repeat)", res[res.label("near_tie")]["the median and its sorted neighbours "
                                                                                   "kept"], "%"),
            Measurement("mlp0_same_five_near_ties", "MLP 0's SEP output from a list with the same five middle values: "
                        "share of the control's loss avoided on near ties",
                        res[res.label("near_tie")]["the five middle values kept"], "%"),
            Measurement("mlp0_refined_near_ties", f"near ties with each step exact within {mlp0_reading.TRANSITION} of "
                        "its threshold (the refined reading): accuracy", sub[near]["refined accuracy"], "%"),
            Measurement("l1_score_peak", "medians for which the selecting head's score map peaks within one value of "
                        "the median", ((peaks - torch.tensor(rows)).abs() <= 1).float().mean().item(), "%"),
            Measurement("l1_query_mlp0", "lists on which MLP 0's output alone, on the query side, picks the real top "
                        "key", parts["MLP 0"]["query"], "%"),
            Measurement("l1_query_head", "lists on which the layer-0 head's output alone, on the query side, picks it",
                        parts["layer-0 head"]["query"], "%"),
            Measurement("snap", "the one-key algorithm's agreement where the median is alone in its interval between "
                        "MLP 0's thresholds minus where it is not, mean over families",
                        sum(v["agree alone"] - v["agree shared"] for v in pooled) / max(1, len(pooled)))]


def checkpoint_record(model, suite) -> tuple:
    """(claims, measurements) of the notebook for `model` alone (benchmarks/claims_across_seeds.py), with what the
    notebook loads beside it: the committed averaging baseline and hand-built model where they have its task shape;
    snapshots left out; the program fitted afresh."""
    folder = Path(__file__).resolve().parent / "checkpoints"
    beside = {}
    for name in ("averaging", "handbuilt"):
        try:
            beside[name] = load_checkpoint(folder / f"{name}.pt", task=TASK, n_ctx=model.cfg.n_ctx,
                                           d_vocab=model.cfg.d_vocab)
        except CheckpointError:
            beside[name] = None
    record = measure(model, suite, task(model.cfg.n_ctx - 1, model.cfg.d_vocab_out), beside["averaging"], None,
                     "across seeds: snapshots not kept", beside["handbuilt"], "")
    return hypotheses(record), measurements(record)


@torch.no_grad()
def measure_program(model, suite, task, record, checkpoint) -> dict:
    """The trained model as a short program (find_median.explanation): the program read for this run, how well it
    stands in for the model (its accuracy, answers and attention on every family, and the model's own mistakes:
    the suite's and a search's), each term in its component's place alone and cumulatively, and the open
    questions: what MLP 1 corrects, and how close the head's scores are where the program's top key differs."""
    from . import explanation as E
    try:
        program, how = E.load_or_fit(model, task, checkpoint)
    except ValueError as error:
        return {"program": None, "program note": str(error)}
    attention = suite.like({f: s.softmax(-1) for f, s in record["scores"].items()})
    wrong = record["mistakes"] + collect_mistakes(model, task, 50_000)
    small = suite.first(100, 1000)
    uniform = suite.uniform[0][:20000]
    return {"program": program, "program how": how, "program note": "",
            "fidelity": E.fidelity(program, model, suite, record["predictions"], attention),
            "on mistakes": E.on_mistakes(program, wrong),
            "substitution": E.substitution_table(program, model, small),
            "corrections": E.mlp1_corrections(model, suite.first(1000, 10000)),
            "score ties": E.score_ties(program, uniform, record["scores"][suite.uniform_label][:20000])}


def program_claims(r) -> list:
    """The program stands in for the model: as right as the bar, its attention close to the head's, the model's
    mistakes among its own, and short."""
    fid, note = r.get("fidelity"), r.get("program note", "")
    get = lambda fn: fn() if fid else None
    worst = lambda: fid.weakest("accuracy")
    mistakes = r.get("on mistakes") or {}
    return [
        Claim("program_uniform", "the program (find_median/explanation.py) is as right as the bar on fresh uniform "
              "lists", get(lambda: fid[fid.uniform_label]["accuracy"]), ">=", BAR_UNIFORM, "it must stand in for a "
              "model that meets the bar", "%", note=note),
        Claim("program_families", "the program is right on every family, the weakest included "
              f"({get(worst) or 'n/a'})", get(lambda: fid[worst()]["accuracy"]), ">=", BAR_FAMILY,
              "it must stand in for a model that meets the bar", "%", note=note),
        Claim("program_attention", "its attention is the selecting head's: the mean total-variation distance "
              "between the two on uniform lists", get(lambda: fid[fid.uniform_label]["attention distance"]), "<=",
              1 - ALMOST_ALL, "at most a tenth of the attention placed elsewhere", note=note),
        Claim("program_mistakes", f"it makes the model's mistakes: on the model's {mistakes.get('mistakes', 0)} mistakes "
              "(the suite's and a search's), the share where the program gives the same wrong answer",
              mistakes.get("same wrong answer"), ">", MOST, "'makes the model's mistakes' means on most of them", "%",
              note=note or ("" if mistakes.get("mistakes") else "no mistakes found")),
        Claim("program_short", "the program is short: how many numbers it holds", r["program"].count() if fid else None,
              "<=", 2000, "a fifteenth of the model's 29,600 parameters, as issue 27 asks", note=note),
    ]


def mlp_reading_table(r) -> str:
    """Markdown: per MLP, the variance of its SEP output each candidate explains, and which writers the last MLP's
    neurons read."""
    table = markdown_table(["MLP", "lookup of the median", "linear in the mean", "linear in the histogram",
                            "lookup of the selected value"],
                           [[f"MLP {l}"] + [num(e[k]) for k in ("median", "mean", "histogram", "selected")]
                            for l, e in r["explained"].items()])
    reads = r["last MLP reads"]
    return table + ("" if not reads else "\n\nWhich writers the last MLP's neurons read: the share of their "
                    "pre-activation variance at SEP each earlier component's output explains alone: " +
                    ", ".join(f"{c} {v:.3f}" for c, v in reads.items()) + ".")


def algorithm_table(r) -> str:
    """Markdown: per family, the one-key algorithm's agreement with the model, the inputs it leaves unexplained (and
    the share of them picking a sorted neighbour of the median), and the loss that restricting the selecting head to
    its top key recovers."""
    rows = []
    for family, agree in r["one key"].items():
        tokens, targets = r["suite families"][family]
        picked = tokens[torch.arange(len(tokens)), r["scores"][family][:, :-1].argmax(-1)]
        wrong = [(family, row[:-1].tolist(), t, p) for row, t, p in zip(tokens[~agree], targets[~agree].tolist(),
                                                                         picked[~agree].tolist())]
        rows.append([family, pct(agree.float().mean().item()), f"{len(wrong):,}",
                     pct(sorted_neighbour_share(wrong, (tokens.shape[1] - 1) // 2), 1),
                     pct(r["on top key"][family]["loss recovered"]) if r.get("on top key") else "-"])
    return markdown_table(["family", "agreement with the model", "inputs it leaves unexplained",
                           "of those, picking a sorted neighbour of the median", "loss recovered by (c)"], rows)


def explore(model, tokens, cache, view, context: dict):
    """shared.explore's readings for one list: layer 0's average (its SEP attention, already in the view), which of
    MLP 0's read neurons fire at SEP, the selecting head's score per key, and what section 6's program predicts,
    marked where it differs from the model (context: a notebook record with its MLP 0 reading and program)."""
    if model.cfg.n_layers < 2:
        return
    sel = context.get("sel") or C.head_most_on(model, tokens, answer_positions(tokens, torch.tensor([view.truth])),
                                               range(1, model.cfg.n_layers))[0]
    view.readings[f"{head_name(*sel)} score"] = cache["attn_scores", sel[0]][0, sel[1], -1].tolist()
    reading = context.get("mlp0")
    if reading:
        post = cache["blocks.0.mlp.hook_post"][0, -1]
        fire = lambda j: "fires" if post[j] > 0 else "silent"
        view.lines.append("MLP 0's read neurons at SEP: " + "; ".join(
            f"{j} ({mlp0_reading.neuron_meaning(reading, j)}) {fire(j)}" for j in reading["important"].tolist()))
    program = context.get("program")
    if program is not None:
        attention = program.attention(tokens)[0]
        answer = program.logits(tokens)[0].argmax().item()
        view.readings["program's attention"] = attention.tolist()
        distance = C.attention_distance(attention[None], cache["pattern", sel[0]][:, sel[1], -1])
        view.lines.append(f"the program (section 6) answers {answer}" + (" like the model" if answer == view.answer else
                          f", **not the model's {view.answer}**") + f"; its attention differs from the head's by "
                          f"{distance:.2f} (TV)")


def explore_context(model, checkpoint) -> dict:
    """What `explore` reads on the command line: MLP 0 read on 300 lists, and the program saved beside the
    checkpoint for this run, if any (python find_median/explanation.py CHECKPOINT --save)."""
    from .explanation import load_saved
    reading = None if mlp0_applies(model, (1, 0)) else mlp0_reading.read_mlp0(model, size=300)
    return {"mlp0": reading, "program": load_saved(model, checkpoint)}
