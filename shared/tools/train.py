"""The training loop every task shares: AdamW, warmup then cosine decay, gradient clipping, fresh batches.

The loss is cross-entropy on the last position only: every task here reads its answer there.
"""
import math
import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..tasks import evaluate


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


class Progress:
    """The held-out evaluations of one run (its history) and the early-stop check."""

    def __init__(self, model, eval_tokens, eval_targets, target_accuracy, family_target, stop_families, bar):
        self.model, self.eval = model, (eval_tokens, eval_targets)
        self.target, self.family_target, self.stop_families, self.bar = target_accuracy, family_target, stop_families, bar
        self.history = {"step": [], "train_loss": [], "eval_loss": [], "eval_accuracy": [], "seconds": [],
                        "target_reached": None}
        self.t0 = time.perf_counter()

    def record(self, step, train_loss) -> float:
        self.model.eval()
        eval_loss, acc = evaluate(self.model, *self.eval)
        self.model.train()
        for key, value in zip(("step", "train_loss", "eval_loss", "eval_accuracy", "seconds"),
                              (step, float(train_loss), eval_loss, acc, time.perf_counter() - self.t0)):
            self.history[key].append(value)
        self.bar.set_postfix(loss=f"{eval_loss:.4f}", acc=f"{acc:.4%}")
        return acc

    def target_met(self, acc) -> bool:
        """Held-out accuracy at the target, and (checked only then) every stop family at family_target."""
        if self.target is None or acc < self.target:
            return False
        if not self.stop_families:
            return True
        self.model.eval()
        bar_each = self.target if self.family_target is None else self.family_target
        met = all(evaluate(self.model, x, y)[1] >= bar_each for x, y in self.stop_families.values())
        self.model.train()
        return met


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
    bar = tqdm(range(1, max_steps + 1), disable=not progress, desc="train", mininterval=0.5)
    run = Progress(model, eval_tokens, eval_targets, target_accuracy, family_target, stop_families, bar)
    snapshot_steps = set(snapshot_steps) if on_snapshot is not None else set()
    if 0 in snapshot_steps:
        on_snapshot(0, model)
    running, n_running, step, interrupted = 0.0, 0, 0, False
    try:
        for step in bar:
            if stop_requested is not None and stop_requested():
                step, interrupted = step - 1, True
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step - 1, lr, warmup_steps, max_steps, min_lr_frac)
            running += _step(model, opt, *sample_batch(batch_size, gen), dev, grad_clip)  # no per-step device sync
            n_running += 1
            if step in snapshot_steps:
                on_snapshot(step, model)
            if step % eval_every == 0 or step == max_steps:
                acc, running, n_running = run.record(step, running / max(1, n_running)), 0.0, 0
                if run.target_met(acc):
                    run.history["target_reached"] = step
                    break
    except KeyboardInterrupt:  # keep what was learnt; the caller decides where it goes
        interrupted = True
    bar.close()
    model.eval()
    run.history["stopped_at"], run.history["interrupted"] = step, interrupted
    return run.history


def _step(model, opt, tokens, targets, dev, grad_clip):
    """One AdamW step on a batch; returns the loss (a tensor, not synced to the host)."""
    loss = F.cross_entropy(model(tokens.to(dev), last_only=True)[:, -1], targets.to(dev))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    opt.step()
    return loss.detach()
