"""The training loop every task shares: AdamW, warmup then cosine decay, gradient clipping, fresh batches; the loss is
cross-entropy on the last position only (every task here reads its answer there)."""
import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..tasks import evaluate


def pick_device(device: str = "auto") -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


def held_out(task, size: int, seed: int):
    """A fixed sample of the training distribution, from a stream the training batches never use."""
    return task.sample_batch(size, torch.Generator().manual_seed(10_000_019 + seed))


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
    """AdamW, no weight decay on biases and LayerNorm weights; fused: one kernel per tensor instead of a dozen small
    ops, most of the optimizer's time for models this small."""
    groups = [[p for p in model.parameters() if (p.dim() >= 2) == decays] for decays in (True, False)]
    return torch.optim.AdamW([{"params": groups[0], "weight_decay": weight_decay}, {"params": groups[1],
                              "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), fused=True)


def evaluation(model, held: tuple, p: dict, stop_families) -> tuple:
    """(held-out loss, accuracy, whether training may stop: the accuracy at target_accuracy and, checked only then,
    every one of stop_families ({name: (tokens, targets)}) at target_family_accuracy (default: the same))."""
    model.eval()
    loss, accuracy = evaluate(model, *held)
    each = p["target_accuracy"] if p.get("target_family_accuracy") is None else p["target_family_accuracy"]
    met = p["target_accuracy"] is not None and accuracy >= p["target_accuracy"] and all(
        evaluate(model, *batch)[1] >= each for batch in (stop_families or {}).values())
    model.train()
    return loss, accuracy, met


def train(model, task, p: dict, progress=True, stop_families=None, on_snapshot=None, stop_requested=None) -> dict:
    """Train `model` in place on fresh batches of task.sample_batch(size, generator) with training.py's hyperparameters
    `p`, evaluating on held_out(task, ...) every eval_every steps and at the end until `evaluation` says it may stop (a
    model right on the training mix can still fail near ties). Calls on_snapshot(step, model) at p["snapshots"]
    log-spaced steps. Ctrl-C, or stop_requested() turning true (checked before each step), stops it, the model kept.
    Returns the history: per evaluation `step, train_loss, eval_loss, eval_accuracy, seconds`; `stopped_at`,
    `interrupted`, `target_reached` (the step the target was met at, or None)."""
    torch.set_flush_denormal(True)  # tiny weights' denormal floats can slow CPU steps several-fold
    dev, held = pick_device(p["device"]), held_out(task, p["eval_size"], p["seed"])
    gen = torch.Generator().manual_seed(p["seed"])  # the data stream; model.cfg.seed fixed the weights
    opt = make_optimizer(model.to(dev).train(), p["lr"], p["weight_decay"])
    snapshot_steps = set(snapshot_schedule(p["max_steps"], p.get("snapshots", 0))) if on_snapshot else set()
    history = {key: [] for key in ("step", "train_loss", "eval_loss", "eval_accuracy", "seconds")}
    history["target_reached"], t0, losses, step, interrupted = None, time.perf_counter(), [], 0, False
    bar = tqdm(range(1, p["max_steps"] + 1), disable=not progress, desc="train", mininterval=0.5)
    if 0 in snapshot_steps:
        on_snapshot(0, model)
    try:
        for step in bar:
            if stop_requested is not None and stop_requested():
                step, interrupted = step - 1, True
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step - 1, p["lr"], p["warmup_steps"], p["max_steps"], p["min_lr_frac"])
            losses.append(_step(model, opt, *task.sample_batch(p["batch_size"], gen), dev, p["grad_clip"]))
            if step in snapshot_steps:
                on_snapshot(step, model)
            if step % p["eval_every"] == 0 or step == p["max_steps"]:
                loss, accuracy, met = evaluation(model, held, p, stop_families)
                for key, value in zip(history, (step, torch.stack(losses).mean().item(), loss, accuracy,
                                                time.perf_counter() - t0)):
                    history[key].append(value)
                bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4%}")
                losses, history["target_reached"] = [], step if met else None
                if met:
                    break
    except KeyboardInterrupt:  # keep what was learnt; the caller decides where it goes
        interrupted = True
    bar.close()
    return {**history, "stopped_at": step, "interrupted": interrupted}


def _step(model, opt, tokens, targets, dev, grad_clip):
    """One AdamW step on a batch; returns the loss (a tensor, not synced to the host)."""
    loss = F.cross_entropy(model(tokens.to(dev), last_only=True)[:, -1], targets.to(dev))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    opt.step()
    return loss.detach()
