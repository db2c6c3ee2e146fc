"""Reading an MLP neuron by neuron: what each token, through the head before it, does to each neuron.

In a layer-0 block without LayerNorm, a neuron's pre-activation at a query position is linear in the attention
pattern of the heads before it: with a_hi the attention of head h from the query on key i (holding token x_i),

    pre_j = bias_j + direct_token[x_q, j] + direct_position[q, j] + sum_h sum_i a_hi (token[h, x_i, j] + position[h, i, j])

`neuron_terms` reads every term from the weights (exact); `NeuronTerms.pre` rebuilds the pre-activation from a
given pattern (the real one: exact; a uniform one: the averaging approximation, whose error on real inputs says
how far that reading holds). `fit_shapes` fits a few-parameter shape to each neuron's token response (a step at
a threshold, a ramp, a bump), and `token_response_patches` puts another token response into the trained model
(shared.ablation; its Matched source is the resampling that keeps one property of the input).
"""
from dataclasses import dataclass

import torch

from .ablation import Patch
from .faithfulness import recovered


@dataclass
class NeuronTerms:
    """The terms of MLP `layer`'s pre-activation (see the module's docstring), all [.., d_mlp]."""
    token: torch.Tensor  # [n_heads, d_vocab, d_mlp]: per unit of attention on a key holding the token
    position: torch.Tensor  # [n_heads, n_ctx, d_mlp]: per unit of attention on a key at the position
    direct_token: torch.Tensor  # [d_vocab, d_mlp]: the query's own token, through the residual stream
    direct_position: torch.Tensor  # [n_ctx, d_mlp]
    bias: torch.Tensor  # [d_mlp]: b_in, b_O and every head's b_V (each head's attention sums to 1)

    def pre(self, tokens, pattern, query_pos: int = -1):
        """[batch, d_mlp]: the pre-activation at query_pos from tokens [batch, pos] and the heads' attention
        from that query, pattern [batch, n_heads, pos] (keys after the query get weight 0)."""
        q = query_pos % tokens.shape[1]
        keys = torch.arange(tokens.shape[1])
        through_heads = torch.einsum("bhk,hbkm->bm", pattern, self.token[:, tokens]) + torch.einsum(
            "bhk,hkm->bm", pattern, self.position[:, keys])
        return self.bias + self.direct_token[tokens[:, q]] + self.direct_position[q] + through_heads


@torch.no_grad()
def neuron_terms(model, layer: int = 0) -> NeuronTerms:
    """Every term of MLP `layer`'s pre-activation, exact from the weights. Only layer 0 reads the embeddings
    alone, and LayerNorm would make the terms interact: anything else raises ValueError."""
    cfg = model.cfg
    if layer != 0 or cfg.d_mlp is None or cfg.normalization_type is not None:
        raise ValueError("neuron_terms reads MLP 0 of a model without LayerNorm: its heads' keys are the embeddings, "
                         "so every term is linear")
    block = model.blocks[layer]
    W_in = block.mlp.W_in
    OV_in = torch.einsum("hde,hef,fm->hdm", block.attn.W_V, block.attn.W_O, W_in)  # [n_heads, d_model, d_mlp]
    bias = block.mlp.b_in + block.attn.b_O @ W_in + torch.einsum("he,hef,fm->m", block.attn.b_V, block.attn.W_O, W_in)
    return NeuronTerms(token=torch.einsum("vd,hdm->hvm", model.W_E, OV_in),
                       position=torch.einsum("pd,hdm->hpm", model.W_pos, OV_in),
                       direct_token=model.W_E @ W_in, direct_position=model.W_pos @ W_in, bias=bias)


def uniform_pattern(tokens, n_heads: int, query_pos: int = -1):
    """[batch, n_heads, pos]: every head attending evenly to the keys the query sees (causal)."""
    batch, positions = tokens.shape
    seen = query_pos % positions + 1
    pattern = torch.zeros(batch, n_heads, positions)
    pattern[..., :seen] = 1 / seen
    return pattern


# --- a shape per neuron ------------------------------------------------------------------------------------
# Each kind is a family of basis curves g(v; shape parameters) on a grid; the fit of a neuron's response y(v) is
# a + b g(v) with a, b by least squares, so its R^2 is corr(g, y)^2 and the whole grid fits in one product.

def _step_grid(V):
    """A smooth step up at threshold t (between two values) with width w: sigmoid((v - t) / w)."""
    v = torch.arange(V, dtype=torch.float64)
    thresholds = torch.arange(0.5, V - 1, 0.5, dtype=torch.float64)
    widths = torch.tensor([0.05, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64)  # 0.05: a sharp step
    t, w = torch.meshgrid(thresholds, widths, indexing="ij")
    params = torch.stack([t.flatten(), w.flatten()], 1)
    return torch.sigmoid((v - params[:, :1]) / params[:, 1:]), params


def _bump_grid(V):
    """A bump at centre c with width s: exp(-(v - c)^2 / (2 s^2))."""
    v = torch.arange(V, dtype=torch.float64)
    centres = torch.arange(0, V, 0.5, dtype=torch.float64)
    widths = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    c, s = torch.meshgrid(centres, widths, indexing="ij")
    params = torch.stack([c.flatten(), s.flatten()], 1)
    return torch.exp(-(v - params[:, :1]) ** 2 / (2 * params[:, 1:] ** 2)), params


def _ramp_grid(V):
    return torch.arange(V, dtype=torch.float64)[None], torch.zeros(1, 0, dtype=torch.float64)


SHAPES = {"step": (_step_grid, ("threshold", "width")), "ramp": (_ramp_grid, ()),
          "bump": (_bump_grid, ("centre", "width"))}


@torch.no_grad()
def fit_shapes(responses, kinds=tuple(SHAPES)) -> dict:
    """Fit each row of responses [neurons, V] (a neuron's response to each value) with each kind of shape.
    Returns {kind: {"r2" [neurons], "fitted" [neurons, V], "offset", "scale" [neurons], and one [neurons]
    tensor per shape parameter (a step's threshold and width, a bump's centre and width)}}. A step's
    threshold t sits between two values: the response rises (scale > 0) or falls from below t to above it."""
    y = responses.double()
    V = y.shape[1]
    yc = y - y.mean(1, keepdim=True)
    y_norm = yc.norm(dim=1).clamp_min(1e-12)
    fits = {}
    for kind in kinds:
        make, names = SHAPES[kind]
        basis, params = make(V)  # [grid, V], [grid, len(names)]
        gc = basis - basis.mean(1, keepdim=True)
        g_norm = gc.norm(dim=1).clamp_min(1e-12)
        corr = (yc @ gc.T) / (y_norm[:, None] * g_norm[None])  # [neurons, grid]
        best = (corr ** 2).argmax(1)
        scale = corr[torch.arange(len(y)), best] * y_norm / g_norm[best]
        offset = y.mean(1) - scale * basis[best].mean(1)
        fitted = offset[:, None] + scale[:, None] * basis[best]
        total = (yc ** 2).sum(1).clamp_min(1e-24)
        fits[kind] = {"r2": (1 - ((y - fitted) ** 2).sum(1) / total).float(), "fitted": fitted.float(),
                      "offset": offset.float(), "scale": scale.float(),
                      **{name: params[best, i].float() for i, name in enumerate(names)}}
    return fits


def best_shape(fits: dict, order=("ramp", "step", "bump"), tolerance: float = 0.01) -> list:
    """Per neuron, the kind with the highest R^2, preferring the earlier kind of `order` when it is within
    `tolerance` of the best (a step wide enough fits a ramp too: the reading with fewer parameters wins a tie)."""
    r2 = torch.stack([fits[kind]["r2"] for kind in order])  # [kinds, neurons]
    top = r2.max(0).values
    return [next(kind for i, kind in enumerate(order) if r2[i, j] >= top[j] - tolerance) for j in range(r2.shape[1])]


# --- causal tests of a reading -------------------------------------------------------------------------------

def token_response_patches(model, tokens, token_response, head: int = 0, layer: int = 0) -> list:
    """shared.ablation Patches that put token_response [d_vocab, d_mlp] in place of MLP `layer`'s token term
    through `head`, at every position: each neuron's pre-activation moves by sum_i a_i (new[x_i] - exact[x_i]),
    with the model's own attention a; every other term and weight stays as trained (passing the exact term back
    reproduces the model)."""
    exact = neuron_terms(model, layer).token[head]
    delta = (token_response.to(exact) - exact)[tokens]  # [batch, pos, d_mlp]
    pattern = f"blocks.{layer}.attn.hook_pattern"
    shift = lambda pre, run: pre + torch.einsum("bqk,bkm->bqm", run[pattern][:, head], delta)
    return [Patch(f"blocks.{layer}.mlp.hook_pre", (Ellipsis,), shift, needs=(pattern,))]


def loss_kept(model_loss: float, resampled_loss: float, control_loss: float) -> float:
    """The share of the control's loss increase that resampling within the key avoids: 1.0 when the key
    carries everything the component hands on, 0.0 when it carries nothing the control does not: the loss
    recovered with the control as the ablation (NaN when the control costs nothing)."""
    return recovered(resampled_loss, control_loss, model_loss)
