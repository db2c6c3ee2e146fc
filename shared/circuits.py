"""Circuit tools: full QK/OV circuits, direct logit attribution, where heads look, select-then-copy read-outs, and
summaries of copying and monotonicity (interventions: shared.ablation, shared.patching; shared.composition).

Conventions are TransformerLens' row-vector ones: a residual vector x is a row, a head scores query x_q
against key x_k as (x_q W_Q + b_Q)(x_k W_K + b_K)^T / sqrt(d_head), and writes pattern-weighted
(x W_V + b_V) W_O. So W_QK = W_Q W_K^T and W_OV = W_V W_O, both [d_model, d_model].

LayerNorm, where a model has it, is handled so that every number stays exact or says what it assumes:
  * layer-0 circuits over tokens and positions apply ln1 to W_E[t] + W_pos[p] itself: that sum is exactly
    the residual stream layer 0 reads, so the full QK circuit of layer 0 is exact;
  * ln_final, applied to a sum of many components, is linearised with its scale measured on real
    activations (`final_scale`, from the cache); centring is linear and is applied exactly.
"""
import math

import torch
import torch.nn.functional as F


def _ln(module, x):
    return x if isinstance(module, torch.nn.Identity) else module(x)


def embeddings(model, positions=None):
    """Residual vectors W_E[t] + W_pos[p]: [d_vocab, d_model], or [len(positions), d_vocab, d_model]."""
    if positions is None:
        return model.W_E
    return model.W_E[None, :, :] + model.W_pos[list(positions)][:, None, :]


@torch.no_grad()
def full_qk_circuit(model, head, query_token, query_pos, key_positions=None, layer=0):
    """Attention score (scaled, pre-softmax) of a query token at query_pos against every key token.

    Returns [d_vocab] with positional embeddings left out of the keys, or [len(key_positions), d_vocab]
    with them in. Exact for layer 0 (its input is the embeddings), biases included; for a later layer it
    is only the direct path from the embeddings.
    """
    attn, ln = model.blocks[layer].attn, model.blocks[layer].ln1
    x_q = _ln(ln, model.W_E[query_token] + model.W_pos[query_pos])
    q = x_q @ attn.W_Q[head] + attn.b_Q[head]
    keys = _ln(ln, embeddings(model, key_positions))
    k = keys @ attn.W_K[head] + attn.b_K[head]
    return (k @ q) / math.sqrt(attn.W_Q.shape[-1])


@torch.no_grad()
def full_ov_circuit(model, head, layer=0, position=None, final_scale=None):
    """[d_vocab, d_vocab_out]: logits the head adds when it attends fully to token t (rows): W_E W_OV W_U.

    position adds W_pos[position] to every token (needed when ln1 is present, since LN is not linear).
    final_scale is ln_final's scale (scalar or per row) measured on real activations; the final
    LayerNorm's centring and weight are applied exactly. Biases (b_V, b_O, b_U) are left out: they shift
    every row alike. For a later layer this is the direct path only.
    """
    ln = model.blocks[layer].ln1
    x = model.W_E if position is None else model.W_E + model.W_pos[position]
    attn = model.blocks[layer].attn
    out = _ln(ln, x) @ attn.W_V[head] @ attn.W_O[head]
    if not isinstance(model.ln_final, torch.nn.Identity):
        if final_scale is None:
            raise ValueError("this model has a final LayerNorm: pass final_scale measured from the cache")
        final_scale = torch.as_tensor(final_scale, dtype=out.dtype)
        out = (out - out.mean(-1, keepdim=True)) / final_scale.reshape(-1, 1) * model.ln_final.w
    return out @ model.W_U


# ------------------------------------------------------------------------------ direct logit attribution
def direct_logits(model, part, scale=None):
    """The logits [batch, d_vocab_out] that part [batch, d_model], a piece of the residual stream at the last
    position, writes directly: part @ W_U, biases left out. The one LayerNorm rule: where the model has a
    final LayerNorm, its centring and gain are applied (both linear); its per-sample scale is divided out when
    given (ln_final.hook_scale at the last position, [batch]: then the parts plus ln_final.b @ W_U and b_U sum
    to the logits exactly), else left out, which rescales each sample's logits alike and changes no argmax."""
    if not isinstance(model.ln_final, torch.nn.Identity):
        part = (part - part.mean(-1, keepdim=True)) * model.ln_final.w
        if scale is not None:
            part = part / scale[:, None]
    return part @ model.W_U


# -------------------------------------------------------------------------------------- summary measures
def diagonal_fraction(M):
    """Fraction of rows i whose largest entry is at column i (of the square top-left block of M)."""
    n = min(M.shape)
    return (M[:n, :n].argmax(-1) == torch.arange(n, device=M.device)).float().mean().item()


def copying_score(M):
    """Sum of eigenvalues over sum of their magnitudes, Re(sum λ) / sum |λ| (of the square block), in
    [-1, 1]: 1 for a matrix whose eigenvalues are all positive, as a pure copying head's are."""
    n = min(M.shape)
    eig = torch.linalg.eigvals(M[:n, :n].double())
    return (eig.sum().real / eig.abs().sum()).item()


def rank_correlation(x, y):
    """Spearman's rank correlation between two 1-d sequences (ties broken by order)."""
    rx = torch.as_tensor(x, dtype=torch.float64).argsort().argsort().double()
    ry = torch.as_tensor(y, dtype=torch.float64).argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return (rx @ ry / (rx.norm() * ry.norm())).item()


# ------------------------------------------------------------------------- interventions and read-outs
def is_one_head_attention_only(model) -> bool:
    """One layer, one head, no MLP, no LayerNorm: the model whose logits the weights give exactly."""
    cfg = model.cfg
    return cfg.n_layers == 1 and cfg.n_heads == 1 and cfg.d_mlp is None and cfg.normalization_type is None


@torch.no_grad()
def select_and_copy_from_weights(model, tokens):
    """'Select, then copy' read off the weights of a one-layer, one-head, attention-only model without
    LayerNorm, exact under its one assumption (the head attends to one key): the full QK circuit from each
    input's own last token (positions included) picks the key (SEP excluded), and the logits are that
    query token's direct path plus the head's output for the chosen token at its position, every bias
    included. No forward pass. Returns (answers, chosen positions)."""
    if not is_one_head_attention_only(model):
        raise ValueError("select_and_copy_from_weights is exact only for one layer, one head, no MLP and no "
                         "LayerNorm; use select_and_copy_from_activations for this model")
    B, P = tokens.shape
    rows, attn = torch.arange(B), model.blocks[0].attn
    chosen = torch.empty(B, dtype=torch.long)
    for query in tokens[:, -1].unique():
        mine = tokens[:, -1] == query
        scores = full_qk_circuit(model, 0, query.item(), P - 1, range(P - 1))  # [pos, vocab]
        chosen[mine] = scores[torch.arange(P - 1), tokens[mine, :-1]].argmax(-1)
    x_query = model.W_E[tokens[:, -1]] + model.W_pos[P - 1]
    x_key = model.W_E[tokens[rows, chosen]] + model.W_pos[chosen]
    head_out = (x_key @ attn.W_V[0] + attn.b_V[0]) @ attn.W_O[0] + attn.b_O
    return ((x_query + head_out) @ model.W_U + model.b_U).argmax(-1), chosen


@torch.no_grad()
def select_and_copy_from_activations(model, tokens, layer=0, head=0):
    """An approximate 'select, then copy' reading of any head: the key position (SEP excluded) with the
    head's highest real pre-softmax score from the last query (from the cache, so earlier layers' work is
    in it), then the argmax of the head's full OV row (direct path) for the token there. It ignores every
    other component's direct contribution, and a final LayerNorm is linearised at its mean measured scale.
    Returns (answers, chosen positions)."""
    if has_layernorm(model, layer) and layer > 0:
        raise ValueError("select_and_copy_from_activations cannot read the OV row of a layer > 0 through ln1: its "
                         "input is not a token embedding")
    rows = torch.arange(len(tokens))
    _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{layer}.attn.hook_attn_scores")
    chosen = cache["attn_scores", layer][:, head, -1, :-1].argmax(-1)
    scale = None if isinstance(model.ln_final, torch.nn.Identity) else final_scale(model, tokens)
    if not has_layernorm(model, layer):
        return full_ov_circuit(model, head, layer, final_scale=scale)[tokens[rows, chosen]].argmax(-1), chosen
    answers = torch.empty(len(tokens), dtype=torch.long)
    for position in chosen.unique().tolist():  # ln1 is not linear: each key's row is read at its own position
        mine = chosen == position
        ov = full_ov_circuit(model, head, layer, position=position, final_scale=scale)
        answers[mine] = ov[tokens[mine, position]].argmax(-1)
    return answers, chosen


@torch.no_grad()
def final_scale(model, tokens):
    """ln_final's mean scale at the last position on `tokens` (what full_ov_circuit needs with LayerNorm)."""
    _, cache = model.run_with_cache(tokens, names_filter="ln_final.hook_scale")
    return cache["ln_final.hook_scale"][:, -1].mean().item()


@torch.no_grad()
def sep_scores(model, tokens, layer, head, resid=None):
    """[batch, pos]: head (layer, head)'s pre-softmax scores from the last position to every key, computed from
    the residual stream the layer reads (the model's own hook_attn_scores row, without running the rest of the
    layer at every position: a cheap pass for large batches). resid: that stream, blocks.{layer}.hook_resid_pre,
    if a pass already kept it."""
    name = f"blocks.{layer}.hook_resid_pre"
    if resid is None:
        resid = torch.cat([model.run_with_cache(x, names_filter=name, last_only=True)[1][name]
                           for x in tokens.split(8192)])
    attn, ln = model.blocks[layer].attn, model.blocks[layer].ln1
    x = _ln(ln, resid)
    q = x[:, -1] @ attn.W_Q[head] + attn.b_Q[head]
    k = x @ attn.W_K[head] + attn.b_K[head]
    return torch.einsum("be,bpe->bp", q, k) / math.sqrt(q.shape[-1])


def attention_distance(p, q) -> float:
    """The mean total-variation distance between two attention rows [batch, keys]: half the summed absolute
    difference, 0 when they agree, 1 when they share no key."""
    return (0.5 * (p - q).abs().sum(-1)).mean().item()


@torch.no_grad()
def head_most_on(model, tokens, key_mask, layers=None) -> tuple:
    """((layer, head) whose SEP attention lands most on the keys where key_mask [batch, n] is True, e.g. the
    answer's positions, among `layers` (default: all), and every head's share there [n_layers, n_heads])."""
    shares = attention_on(model, tokens, key_mask)
    allowed = range(model.cfg.n_layers) if layers is None else layers
    best = max(((l, h) for l in allowed for h in range(model.cfg.n_heads)), key=lambda lh: shares[lh].item(),
               default=None)
    return best, shares


@torch.no_grad()
def attention_on(model, tokens, key_mask):
    """[n_layers, n_heads]: mean over the batch of the attention the last position pays to the keys where
    key_mask [batch, k <= pos] is True (summed over those keys, so duplicates of a value count together;
    positions past k count as False)."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    mask = F.pad(key_mask.to(torch.float), (0, tokens.shape[1] - key_mask.shape[1]))
    return torch.stack([(cache["pattern", l][:, :, -1] * mask[:, None]).sum(-1).mean(0)
                        for l in range(model.cfg.n_layers)])


def has_layernorm(model, layer):
    return not isinstance(model.blocks[layer].ln1, torch.nn.Identity)


def variance_explained(features, outputs, fit_share=0.75) -> float:
    """R^2 on held-out rows: the share of the variance of outputs [batch, d] that a least-squares linear map
    from features [batch, f] (plus a constant), fitted on the first fit_share of the rows, explains on the
    rest. With one-hot features it is the share explained by a lookup table of that key."""
    X = torch.cat([features.double(), features.new_ones(len(features), 1).double()], 1)
    Y = outputs.double()
    fit = int(len(X) * fit_share)
    solution = torch.linalg.lstsq(X[:fit], Y[:fit], driver="gelsd").solution  # gelsd: one-hot columns are collinear
    residual = Y[fit:] - X[fit:] @ solution
    return (1 - residual.pow(2).sum() / (Y[fit:] - Y[fit:].mean(0)).pow(2).sum()).item()
