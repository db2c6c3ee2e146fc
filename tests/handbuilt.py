"""Models whose weights are set by hand, so every circuit tool has a known right answer."""
import torch

from shared.model import Config, Transformer
from shared.tasks import to_tokens


def min_model(n=4, V=8, c=10.0):
    """1 layer, 1 head, attention-only find_min model. Residual dims: 0..V-1 one-hot token, V a SEP flag,
    V+1 the token's value (V for SEP, so SEP is never attended). The SEP query scores key value t as
    exactly -c*t; the OV circuit copies the one-hot; W_U reads it out. Positional embeddings are zero."""
    d = V + 2
    cfg = Config(n_layers=1, n_heads=1, d_model=d, d_head=d, n_ctx=n + 1, d_vocab=V + 1, d_vocab_out=V)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        W_E = model.embed.W_E
        W_E[:V, :V] = torch.eye(V)
        W_E[:V, V + 1] = torch.arange(V, dtype=torch.float)
        W_E[V, V], W_E[V, V + 1] = 1.0, V
        a = model.blocks[0].attn
        a.W_Q[0, V, 0] = 1.0
        a.W_K[0, V + 1, 0] = -c * d ** 0.5  # undoes the 1/sqrt(d_head)
        a.W_V[0, :V, :V] = torch.eye(V)
        a.W_O[0, :V, :V] = torch.eye(V)
        model.unembed.W_U[:V, :V] = torch.eye(V)
    return model


def min_batch(size, n=4, V=8, seed=0):
    values = torch.randint(0, V, (size, n), generator=torch.Generator().manual_seed(seed))
    return to_tokens(values, V), values.min(-1).values


def two_layer(d_model=8, d_head=1):
    """2 layers, 1 head each, attention-only, all weights zero: tests set the factors they need."""
    cfg = Config(n_layers=2, n_heads=1, d_model=d_model, d_head=d_head, n_ctx=4, d_vocab=5, d_vocab_out=5)
    model = Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def min_then_move_model(n=4, V=8, c=10.0):
    """2 layers, 1 head each. Layer 0 is min_model's head, writing the minimum's one-hot into a second
    block of dims; layer 1's head attends from SEP to SEP only (its Q and K read the SEP flag) and moves
    that one-hot (V-composition) into a third block, the only one W_U reads."""
    d = 3 * V + 2
    cfg = Config(n_layers=2, n_heads=1, d_model=d, d_head=d, n_ctx=n + 1, d_vocab=V + 1, d_vocab_out=V)
    model = Transformer(cfg).eval()
    first, second, third = slice(0, V), slice(V + 2, 2 * V + 2), slice(2 * V + 2, 3 * V + 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        W_E = model.embed.W_E
        W_E[:V, first] = torch.eye(V)
        W_E[:V, V + 1] = torch.arange(V, dtype=torch.float)
        W_E[V, V], W_E[V, V + 1] = 1.0, V
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_Q[0, V, 0] = 1.0
        a0.W_K[0, V + 1, 0] = -c * d ** 0.5
        a0.W_V[0, first, :V] = torch.eye(V)
        a0.W_O[0, :V, second] = torch.eye(V)
        a1.W_Q[0, V, 0] = 1.0
        a1.W_K[0, V, 0] = 100.0 * d ** 0.5
        a1.W_V[0, second, :V] = torch.eye(V)
        a1.W_O[0, :V, third] = torch.eye(V)
        model.unembed.W_U[third, :] = torch.eye(V)
    return model


def _median_model(n, V, n_layers, d_model, d_head, d_mlp=None, n_heads=1):
    cfg = Config(n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_head=d_head, d_mlp=d_mlp, n_ctx=n + 1,
                 d_vocab=V + 1, d_vocab_out=V)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, :V + 1] = torch.eye(V + 1)  # one-hot tokens, SEP's at dim V
    return model


def _distance(V):
    """[V, V]: -|v - m|, the l1 score whose sum over a list peaks at its median."""
    return -(torch.arange(V)[:, None] - torch.arange(V)[None, :]).abs().float()


def median_averaging_model(n=5, V=8):
    """1 layer, 1 head, attention-only. Zero QK: SEP attends uniformly; the OV circuit writes -|v - m| into
    the logit of every m, so the logits are -sum_i |x_i - m| / (n+1), highest at the median (the averaging
    baseline's mechanism, exact)."""
    model = _median_model(n, V, 1, V + 1, V + 1)
    with torch.no_grad():
        a = model.blocks[0].attn
        a.W_V[0, :V, :V] = torch.eye(V)
        a.W_O[0, :V, :V] = _distance(V)
        model.unembed.W_U[:V, :V] = torch.eye(V)
    return model


def median_mlp_decoder_model(n=5, V=8):
    """1 layer, 1 head, MLP. The head averages the one-hot values into dims V+1..2V (counts / (n+1)), which
    W_U does not read; MLP neuron m computes 100 - sum_v counts[v] |v - m| (positive, so relu is linear) and
    writes it to dim m, which W_U reads as logit m: the MLP decodes the median from the average."""
    model = _median_model(n, V, 1, 2 * V + 1, V, d_mlp=V)
    counts = slice(V + 1, 2 * V + 1)
    with torch.no_grad():
        a, mlp = model.blocks[0].attn, model.blocks[0].mlp
        a.W_V[0, :V, :] = torch.eye(V)
        a.W_O[0, :, counts] = torch.eye(V)
        mlp.W_in[counts, :] = _distance(V)
        mlp.b_in[:] = 100.0
        mlp.W_out[:, :V] = torch.eye(V)
        model.unembed.W_U[:V, :V] = torch.eye(V)
    return model


def median_selector_model(n=5, V=8, sharpness=20.0, distractor=False):
    """2 layers, 1 head each, attention-only. Layer 0 averages the one-hot values into dims V+1..2V
    (counts / (n+1)); layer 1's query reads them (Q-composition) and scores a key holding value x by
    -sharpness * sum_i |x_i - x| (a gap of at least `sharpness` between the median and any other value), SEP
    far below; its OV copies the selected one-hot into dims 2V+1..3V, the only ones W_U reads.
    distractor=True: 2 heads per layer; L0H1 also averages the list, into dims 3V+1..4V, which nothing
    reads (its output depends on the input, but no answer does); L1H1 stays zero."""
    model = _median_model(n, V, 2, 4 * V + 1, V + 1, n_heads=2 if distractor else 1)
    counts, output = slice(V + 1, 2 * V + 1), slice(2 * V + 1, 3 * V + 1)
    if distractor:
        with torch.no_grad():
            model.blocks[0].attn.W_V[1, :V, :V] = torch.eye(V)
            model.blocks[0].attn.W_O[1, :V, 3 * V + 1:] = torch.eye(V)
    scale = (V + 1) ** 0.5  # undoes the 1/sqrt(d_head)
    with torch.no_grad():
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_V[0, :V, :V] = torch.eye(V)
        a0.W_O[0, :V, counts] = torch.eye(V)
        a1.W_Q[0, counts, :V] = _distance(V) * sharpness * (n + 1) * scale
        a1.W_Q[0, V, V] = 1.0  # SEP's flag, so that the SEP key can be scored far below every value
        a1.W_K[0, :V, :V] = torch.eye(V)
        a1.W_K[0, V, V] = -1e4 * scale
        a1.W_V[0, :V, :V] = torch.eye(V)
        a1.W_O[0, :V, output] = torch.eye(V)
        model.unembed.W_U[output, :] = torch.eye(V)
    return model


def median_batch(size, n=5, V=8, seed=0):
    values = torch.randint(0, V, (size, n), generator=torch.Generator().manual_seed(seed))
    return to_tokens(values, V), values.sort(-1).values[:, n // 2]
