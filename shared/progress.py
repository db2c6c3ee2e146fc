"""Progress measures: the circuit tools applied to every training snapshot, to watch structure form.

Which measures apply follows from the model's shape, so both tasks use the same function:
  * always: accuracy per family, and each head's attention from the last position to the answer's position(s);
  * a one-layer model: the QK/OV summaries of its head L0H0 (rank correlation of the full QK row from the
    last token with key value, smallest adjacent-value gap, OV diagonal fraction);
  * a deeper model: Q/K/V composition of L0H0 into L1H0 as a ratio to the random baseline, and the accuracy
    with each head mean-ablated.
"""
import torch

from . import circuits as C
from .components import head_name
from .tasks import answer_positions, family_accuracies


@torch.no_grad()
def progress_measures(model, families: dict, probe) -> dict:
    """{measure name: value} for one model. probe = (tokens, targets), e.g. uniform lists."""
    tokens, targets = probe
    cfg = model.cfg
    out = {f"accuracy: {name}": acc for name, acc in family_accuracies(model, families).items()}
    on_answer = C.attention_on(model, tokens, answer_positions(tokens, targets))
    for l in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            out[f"attention on answer: {head_name(l, h)}"] = on_answer[l, h].item()
    if cfg.n_layers == 1:
        V = cfg.d_vocab_out
        qk = C.full_qk_circuit(model, 0, tokens[0, -1].item(), tokens.shape[1] - 1,
                               range(tokens.shape[1] - 1))[:, :V]
        out["QK rank correlation with value"] = min(C.rank_correlation(row, torch.arange(V)) for row in qk)
        out["QK smallest adjacent gap"] = (qk[:, :-1] - qk[:, 1:]).min().item()
        out["OV diagonal fraction"] = C.diagonal_fraction(C.full_ov_circuit(model, 0)[:V])
    else:
        for kind in "QKV":
            ratio = C.composition_scores(model, kind)[0, 0, 1, 0] / C.composition_baseline(cfg, kind)
            out[f"{kind}-composition L0H0->L1H0 / baseline"] = ratio.item()
        for l in range(cfg.n_layers):
            for h in range(cfg.n_heads):
                out[f"accuracy with {head_name(l, h)} ablated"] = C.ablated_accuracy(model, tokens, targets,
                                                                                    [head_name(l, h)])
    return out


def track(snapshots, families: dict, probe) -> dict:
    """{"step": [...], measure: [...]} over [(step, model)] snapshots, in order."""
    rows = [(step, progress_measures(model, families, probe)) for step, model in snapshots]
    series = {"step": [step for step, _ in rows]}
    for name in rows[0][1]:
        series[name] = [measures[name] for _, measures in rows]
    return series


def formation_step(steps, values, fraction=0.9, tolerance=0.1):
    """The first step from which a measure stays at least `fraction` of the way from its first value to
    its last: when that structure has formed. None when the whole change is at most `tolerance` (in the
    measure's own units; accuracies, attention weights and composition ratios are all of order 1), since a
    move that small is noise, not a structure forming."""
    start, end = values[0], values[-1]
    if abs(end - start) <= tolerance:
        return None
    done = [(v - start) / (end - start) >= fraction for v in values]
    for i in range(len(done)):
        if all(done[i:]):
            return steps[i]
    return steps[-1]
