"""The training loop every task shares: AdamW, warmup then cosine decay, gradient clipping, fresh batches.

The loss is cross-entropy on the last position only: every task here reads its answer there.
"""
import math
import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def evaluate(model, tokens, targets, batch_size: int = 8192):
    """(mean loss, accuracy) of the answer read at the last position."""
    device = next(model.parameters()).device
    loss, correct = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        logits = model(tokens[i:i + batch_size].to(device), last_only=True)[:, -1]
        y = targets[i:i + batch_size].to(device)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
    return loss / len(tokens), correct / len(tokens)


def snapshot_schedule(max_steps: int, count: int) -> list:
    """About `count` steps from 0 to max_steps, log-spaced (circuits change fastest early), no repeats."""
    if count <= 0:
        return []
    ratio = max_steps ** (1 / max(1, count - 2))
    return sorted({0, max_steps} | {min(max_steps, round(ratio ** i)) for i in range(count - 1)})


def lr_at(step: int, lr: float, warmup_steps: int, max_steps: int, min_lr_frac: float) -> float:
    """Linear warmup to lr, then cosine decay to lr * min_lr_frac at max_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return lr * (min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, lr: float, weight_decay: float = 0.0):
    """AdamW with no weight decay on biases and LayerNorm weights; fused: one kernel per tensor instead of a
    dozen small ops, which is most of the optimizer's time for models this small."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), fused=True)


def train(model, sample_batch: Callable, eval_tokens, eval_targets, *, max_steps: int, batch_size: int,
          lr: float, weight_decay: float = 0.0, warmup_steps: int = 0, min_lr_frac: float = 0.1,
          grad_clip: float = 1.0, eval_every: int = 200, target_accuracy: Optional[float] = None,
          family_target: Optional[float] = None, seed: int = 0, device: str = "auto", progress: bool = True,
          stop_families: Optional[dict] = None, snapshot_steps: Sequence[int] = (),
          on_snapshot: Optional[Callable] = None, stop_requested: Optional[Callable] = None) -> dict:
    """Train `model` in place on batches from sample_batch(batch_size, generator) -> (tokens, targets).

    Evaluates on the fixed held-out set every `eval_every` steps (and at the end). Stops early once the
    held-out accuracy reaches `target_accuracy` and every family of `stop_families` ({name: (tokens,
    targets)}, checked only then) reaches `family_target` (default: target_accuracy): a model right on the
    training mixture can still fail a family such as near ties. Calls on_snapshot(step, model) at each of
    `snapshot_steps`. Ctrl-C, or stop_requested() turning true (checked before every step), ends training
    early without losing the model. Returns the history: lists `step, train_loss, eval_loss, eval_accuracy,
    seconds` (one entry per evaluation), plus `stopped_at`, `interrupted` and `target_reached` (the step at
    which the target was met, or None).
    """
    torch.set_flush_denormal(True)  # tiny weights' denormal floats can slow CPU steps several-fold
    dev = pick_device(device)
    model.to(dev).train()
    gen = torch.Generator().manual_seed(seed)  # the data stream; model.cfg.seed fixed the weights
    opt = make_optimizer(model, lr, weight_decay)
    history = {"step": [], "train_loss": [], "eval_loss": [], "eval_accuracy": [], "seconds": []}
    snapshot_steps = set(snapshot_steps)
    running, n_running, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(range(1, max_steps + 1), disable=not progress, desc="train", mininterval=0.5)

    def record(step):
        model.eval()
        eval_loss, acc = evaluate(model, eval_tokens, eval_targets)
        model.train()
        for key, value in zip(("step", "train_loss", "eval_loss", "eval_accuracy", "seconds"),
                              (step, float(running) / max(1, n_running), eval_loss, acc, time.perf_counter() - t0)):
            history[key].append(value)
        bar.set_postfix(loss=f"{eval_loss:.4f}", acc=f"{acc:.4%}")
        return acc

    def target_met(acc):
        if target_accuracy is None or acc < target_accuracy:
            return False
        if not stop_families:
            return True
        model.eval()
        bar_each = target_accuracy if family_target is None else family_target
        met = all(evaluate(model, x, y)[1] >= bar_each for x, y in stop_families.values())
        model.train()
        return met

    history["target_reached"] = None
    if 0 in snapshot_steps and on_snapshot is not None:
        on_snapshot(0, model)
    step, interrupted = 0, False
    try:
        for step in bar:
            if stop_requested is not None and stop_requested():
                step, interrupted = step - 1, True
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step - 1, lr, warmup_steps, max_steps, min_lr_frac)
            tokens, targets = sample_batch(batch_size, gen)
            logits = model(tokens.to(dev), last_only=True)[:, -1]
            loss = F.cross_entropy(logits, targets.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
            opt.step()
            running += loss.detach()  # no per-step device sync
            n_running += 1
            if step in snapshot_steps and on_snapshot is not None:
                on_snapshot(step, model)
            if step % eval_every == 0 or step == max_steps:
                acc = record(step)
                running, n_running = 0.0, 0
                if target_met(acc):
                    history["target_reached"] = step
                    break
    except KeyboardInterrupt:  # keep what was learnt; the caller decides where it goes
        interrupted = True
    bar.close()
    model.eval()
    history["stopped_at"], history["interrupted"] = step, interrupted
    return history
