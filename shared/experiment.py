"""What a task's training.py runs once its hyperparameters are settled: build, train, report, save."""
import time
from pathlib import Path

import torch

from .checkpoint import save_checkpoint, save_snapshots
from .cli import apply_overrides
from .model import Config, Transformer
from .tasks import ListTask, accuracy_table, family_accuracies
from .train import snapshot_schedule, train

CLI_LIMITS = dict(  # passed to shared.cli.apply_overrides by every task's training.py
    zero_ok=("weight_decay", "warmup_steps", "grad_clip", "seed", "snapshots"),
    at_most={"target_accuracy": 1.0, "min_lr_frac": 1.0},
    choices={"normalization_type": ("LN", None), "act_fn": ("relu", "gelu"), "device": ("auto", "cpu", "cuda")},
    types={"d_mlp": int},
)


def model_config(task: ListTask, p: dict) -> Config:
    return Config(n_layers=p["n_layers"], n_heads=p["n_heads"], d_model=p["d_model"], d_head=p["d_head"],
                  d_mlp=p["d_mlp"], n_ctx=task.n + 1, d_vocab=task.V + 1, d_vocab_out=task.V,
                  act_fn=p["act_fn"], normalization_type=p["normalization_type"], init_scale=p["init_scale"],
                  seed=p["seed"])


def freeze_uniform_attention(model):
    """Zero and freeze every W_Q, W_K, b_Q, b_K: each query then attends uniformly to all positions it can
    see, so the model can only average (at SEP: the mean of every value's embedding) and decode."""
    for block in model.blocks:
        for p in (block.attn.W_Q, block.attn.W_K, block.attn.b_Q, block.attn.b_K):
            p.data.zero_()
            p.requires_grad_(False)


def held_out(task: ListTask, size: int, seed: int):
    """A fixed sample of the training distribution, from a stream the training batches never use."""
    return task.sample_batch(size, torch.Generator().manual_seed(10_000_019 + seed))


def main(task_factory, g: dict):
    """A task's training.py entry point: apply --name=value overrides to the script's globals `g`, then
    train and save to `out`, a path relative to the script's folder."""
    params = apply_overrides(g, **CLI_LIMITS)
    run_training(task_factory(params["n"], params["V"]), params, Path(g["__file__"]).resolve().parent / params["out"])


def run_training(task: ListTask, p: dict, out_path, progress: bool = True):
    """Train a model for `task` with hyperparameters `p`, print its accuracy per family, save it to out_path.

    Ctrl-C stops training early; the model reached so far is then saved beside out_path as
    *.interrupted.pt, so the finished checkpoint at out_path is never replaced by a partial one.
    With p["snapshots"] = N > 0, weights at about N log-spaced steps (and the last) go to *.snapshots.pt.
    Returns (model, history).
    """
    out_path = Path(out_path)
    model = Transformer(model_config(task, p))
    if p.get("uniform_attention"):
        freeze_uniform_attention(model)
    print(f"{task.name}: n={task.n}, V={task.V}, {sum(x.numel() for x in model.parameters())} parameters")
    steps, states = [], []

    def keep(step, m):
        steps.append(step)
        states.append({k: v.detach().cpu().clone() for k, v in m.state_dict().items()})

    t0 = time.perf_counter()
    history = train(model, task.sample_batch, *held_out(task, p["eval_size"], p["seed"]),
                        max_steps=p["max_steps"], batch_size=p["batch_size"], lr=p["lr"],
                        weight_decay=p["weight_decay"], warmup_steps=p["warmup_steps"],
                        min_lr_frac=p["min_lr_frac"], grad_clip=p["grad_clip"], eval_every=p["eval_every"],
                        target_accuracy=p["target_accuracy"], seed=p["seed"], device=p["device"],
                    progress=progress, snapshot_steps=snapshot_schedule(p["max_steps"], p.get("snapshots", 0)),
                    on_snapshot=keep)
    interrupted = history["interrupted"]
    if interrupted:
        out_path = out_path.with_suffix(".interrupted.pt")
    seconds = time.perf_counter() - t0
    model.cpu().eval()
    families = task.families()
    accuracies = family_accuracies(model, families)
    print(accuracy_table(model, families))
    save_checkpoint(out_path, model, task=task.name, hyperparameters=p, history=history,
                    train_seconds=seconds, family_accuracy=accuracies)
    print(f"{'interrupted after' if interrupted else 'trained in'} {seconds:.1f} s; saved {out_path}")
    if p.get("snapshots"):
        if not steps or steps[-1] != history["stopped_at"]:
            keep(history["stopped_at"], model)
        snapshot_path = out_path.with_suffix(".snapshots.pt")
        save_snapshots(snapshot_path, model.cfg, steps, states)
        print(f"saved {len(steps)} snapshots (steps {steps[0]}..{steps[-1]}) to {snapshot_path}")
    return model, history
