"""A find_median model written by hand from the reading of the trained one, with no gradient step.

    python find_median/handbuilt.py          # writes checkpoints/handbuilt.pt (beside this file)

The algorithm, in the trained model's three steps:
  1. Layer 0's head attends evenly at SEP (W_Q = W_K = 0) and copies each value's one-hot: SEP holds the list's
     histogram, count(v) / (n + 1).
  2. MLP 0 turns the histogram into threshold indicators: for every t in 0..V-2, I_t = [#(x <= t) >= k + 1],
     which is [median <= t]. Two ReLUs make one exact indicator of an integer count c:
     ReLU(c - k) - ReLU(c - k - 1).
  3. Layer 1's head scores each key holding v by 63 - |v - median| (a bilinear form of the indicators and the
     key's one-hot: sum_t (2 I_t - 1) [t >= v] + sum_t (1 - I_t)), times SHARPNESS, so SEP attends to the
     median's copies; its OV circuit copies the one-hot to the logits. MLP 1 is zero.
Every weight is a formula below; `handbuilt_model()` rebuilds the same tensors every time.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from find_median.dataset import check_odd  # noqa: E402
from shared.checkpoint import run_id  # noqa: E402
from shared.model import Config, Transformer  # noqa: E402

SHARPNESS = 20.0  # score gap per value of |v - median|: attention off the median is below e^-20
LOGIT_SCALE = 10.0  # the answer's logit when the head copies it


def layout(V: int) -> dict:
    """The residual stream's named slices: a value's one-hot (also where layer 1 writes the answer), SEP's flag,
    a 'this is a value' flag, the histogram layer 0 writes, the indicators MLP 0 writes."""
    return {"value": slice(0, V), "sep": V, "is_value": V + 1, "histogram": slice(V + 2, 2 * V + 2),
            "indicator": slice(2 * V + 2, 3 * V + 1)}


@torch.no_grad()
def handbuilt_model(n: int = 7, V: int = 64) -> Transformer:
    check_odd(n)
    k, slots = n // 2, layout(V)
    d_model, d_head, thresholds = 3 * V + 1, V, V - 1
    cfg = Config(n_layers=2, n_heads=1, d_model=d_model, d_head=d_head, d_mlp=2 * thresholds, n_ctx=n + 1,
                 d_vocab=V + 1, d_vocab_out=V, seed=0)
    model = Transformer(cfg).eval()
    for param in model.parameters():
        param.zero_()
    values = torch.arange(V)
    t = torch.arange(thresholds)
    hist, ind = slots["histogram"].start, slots["indicator"].start
    # embeddings: one-hot value and the value flag; SEP its own flag; positions nothing
    model.embed.W_E[values, values] = 1.0
    model.embed.W_E[:V, slots["is_value"]] = 1.0
    model.embed.W_E[V, slots["sep"]] = 1.0
    # layer 0: uniform attention (W_Q = W_K = 0), OV copies the one-hot into the histogram slice
    attn0 = model.blocks[0].attn
    attn0.W_V[0, values, values] = 1.0
    attn0.W_O[0, values, hist + values] = 1.0
    # MLP 0: count(x <= t) = (n + 1) * sum_{v <= t} histogram(v); neurons 2t and 2t + 1 make I_t from it
    mlp0 = model.blocks[0].mlp
    at_most = (values[:, None] <= t[None, :]).float() * (n + 1)  # [V, thresholds]
    mlp0.W_in[hist:hist + V, 0::2] = at_most
    mlp0.W_in[hist:hist + V, 1::2] = at_most
    mlp0.b_in[0::2], mlp0.b_in[1::2] = -float(k), -float(k + 1)
    mlp0.W_out[2 * t, ind + t], mlp0.W_out[2 * t + 1, ind + t] = 1.0, -1.0
    # layer 1: query (2 I_t - 1) on head dim t and sum_t (1 - I_t) on head dim V - 1; key [t >= v] and the value
    # flag; scaled so that score = SHARPNESS * (V - 1 - |v - median|) after the 1/sqrt(d_head)
    attn1, scale = model.blocks[1].attn, SHARPNESS * d_head ** 0.5
    attn1.W_Q[0, ind + t, t] = 2.0 * scale
    attn1.b_Q[0, t] = -scale
    attn1.W_Q[0, ind + t, V - 1] = -scale
    attn1.b_Q[0, V - 1] = thresholds * scale
    attn1.W_K[0, :V, :thresholds] = (t[None, :] >= values[:, None]).float()
    attn1.W_K[0, slots["is_value"], V - 1] = 1.0
    attn1.W_V[0, values, values] = 1.0
    attn1.W_O[0, values, values] = 1.0
    model.unembed.W_U[values, values] = LOGIT_SCALE
    return model


def parameter_counts(model) -> tuple:
    """(parameters, nonzero parameters)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(int((p != 0).sum()) for p in params)


def metadata(model) -> dict:
    """What a trained checkpoint records, for a model that was never trained: the notebook and the sweep's
    tools read it the same way."""
    return dict(task="find_median", run_id=run_id(model), train_seconds=0.0, handbuilt=True,
                hyperparameters={"recipe": "find_median/handbuilt.py", "sharpness": SHARPNESS,
                                 "logit_scale": LOGIT_SCALE},
                history={"step": [], "train_loss": [], "eval_loss": [], "eval_accuracy": [], "seconds": [],
                         "stopped_at": 0, "interrupted": False, "target_reached": None})


def main():
    from shared.checkpoint import save_checkpoint
    model = handbuilt_model()
    out = Path(__file__).resolve().parent / "checkpoints" / "handbuilt.pt"
    save_checkpoint(out, model, **metadata(model))
    total, nonzero = parameter_counts(model)
    print(f"saved {out}: {total:,} parameters, {nonzero:,} of them nonzero")


if __name__ == "__main__":
    main()
