"""What a task's training.py runs once its hyperparameters are settled: build, train, report, save."""
import contextlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from ..checkpoint import run_id, save_checkpoint, save_snapshots, snapshots_path
from ..model import Config, Transformer
from ..tasks import ListTask, accuracy_table, family_accuracies
from .cli import apply_overrides
from .train import snapshot_schedule, train

SEED_MAX = 2 ** 62  # seeds feed torch.manual_seed with offsets added: this keeps them inside its 64 bits
CLI_LIMITS = dict(  # passed to shared.tools.cli.apply_overrides by every task's training.py
    zero_ok=("weight_decay", "warmup_steps", "grad_clip", "seed", "snapshots"),
    at_most={"target_accuracy": 1.0, "target_family_accuracy": 1.0, "min_lr_frac": 1.0, "seed": SEED_MAX},
    choices={"normalization_type": ("LN", None), "act_fn": ("relu", "gelu"), "device": ("auto", "cpu", "cuda")},
    types={"d_mlp": int, "embed_std": float},
)


def model_config(task: ListTask, p: dict) -> Config:
    return Config(n_layers=p["n_layers"], n_heads=p["n_heads"], d_model=p["d_model"], d_head=p["d_head"],
                  d_mlp=p["d_mlp"], n_ctx=task.n + 1, d_vocab=task.V + 1, d_vocab_out=task.V,
                  act_fn=p["act_fn"], normalization_type=p["normalization_type"], init_scale=p["init_scale"],
                  embed_std=p.get("embed_std"), seed=p["seed"])


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
    """A task's training.py entry point: apply --name=value overrides to the script's globals `g`, check
    everything that could fail after training, then train and save to `out` (relative to the script's
    folder). Every refusal is one line on stderr, before anything runs or is written. Stopped by SIGINT
    or SIGTERM, it saves the model reached and exits 128 + the signal's number (130, 143), as a shell would."""
    params = apply_overrides(g, **CLI_LIMITS)
    task = make_task(task_factory, params)
    out_path = Path(g["__file__"]).resolve().parent / params["out"]
    check_writable(out_path)
    StopSignals().__enter__()  # installed for the whole run; run_training takes the active one
    _, history = run_training(task, params, out_path)
    for sig in (signal.SIGINT, signal.SIGTERM):  # saved: nothing is left to stop, and the exit must not break
        signal.signal(sig, signal.SIG_IGN)
    if history.get("signal"):
        raise SystemExit(128 + signal.Signals[history["signal"]].value)
    if history["saved_to"] != str(out_path):  # saved, but not where asked (the message said where)
        raise SystemExit(1)


def make_task(task_factory, p: dict) -> ListTask:
    """The task for p's n and V, checked by drawing every evaluation family and a training batch once: a
    parameter the task cannot use (an even n for a task that needs an odd one, a V too small for a family) is
    refused with one line now rather than a traceback after training."""
    try:
        task = task_factory(p["n"], p["V"])
        draws = {**task.families(size=4), "training batch": task.sample_batch(6, torch.Generator().manual_seed(0))}
        for name, (tokens, targets) in draws.items():
            values = tokens[:, :-1]
            if values.min() < 0 or values.max() >= task.V or targets.min() < 0 or targets.max() >= task.V:
                raise ValueError(f"family {name!r} draws values outside 0..V-1")
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"error: --n={p['n']} --V={p['V']}: {str(e).splitlines()[0]}") from None
    return task


def check_writable(out_path):
    """Refuse, in one line, an output path whose folder cannot be created or written."""
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_path.parent):
            pass
    except OSError as e:
        raise SystemExit(f"error: --out={out_path}: cannot write there ({e.strerror or e})") from None


def stop_families(task: ListTask, size: int = 1000):
    """The families the early stop checks: draws of their own (seed 2), apart from the report (seed 0) and
    the evaluation suite (seed 1)."""
    return task.families(size, seed=2)


def training_verdict(history, family_accuracy: dict, target, family_target=None) -> str:
    """One line: whether training met its target, and where the model is weakest."""
    family_target = target if family_target is None else family_target
    weakest, accuracy = min(family_accuracy.items(), key=lambda item: item[1])
    held = history["eval_accuracy"][-1] if history["eval_accuracy"] else float("nan")
    if history["target_reached"] is not None:
        head = f"target reached at step {history['target_reached']}"
    elif history["interrupted"]:
        head = f"target not reached: interrupted at step {history['stopped_at']}"
    else:
        head = f"target not reached by max_steps={history['stopped_at']}"
    return (f"{head} (stopping check: {target:.2%} on held-out, {family_target:.2%} on a fresh draw of every "
            f"family); report: held-out {held:.2%}, weakest family {weakest} {accuracy:.2%}")


class StopSignals:
    """SIGINT and SIGTERM, while a run trains and saves, ask training to stop (it checks before every step)
    instead of raising wherever they land: a second Ctrl-C in the accuracy table or in the save cannot lose
    the model. `received` names the first signal. Only the main thread can take signals; elsewhere this does
    nothing (the default handlers stay). quiet: record the signals without a word (a sweep's worker, whose
    sweep says what happens)."""

    def __init__(self, quiet: bool = False):
        self.received, self.previous, self.quiet = None, {}, quiet

    @staticmethod
    def active():
        """The StopSignals whose handler is installed now, or None."""
        handler = signal.getsignal(signal.SIGINT)
        owner = getattr(handler, "__self__", None)
        return owner if isinstance(owner, StopSignals) else None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        first, self.received = self.received is None, self.received or name
        if self.quiet:
            return
        if first:
            print(f"\n{name}: stopping after this step; the model reached so far will be saved", file=sys.stderr,
                  flush=True)
        else:
            print(f"{name}: already stopping, the model is being saved", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def run_training(task: ListTask, p: dict, out_path, progress: bool = True):
    """_run_training under StopSignals (an active one, as in a sweep's worker, is used as it is)."""
    active = StopSignals.active()
    with (contextlib.nullcontext(active) if active else StopSignals()) as signals:
        model, history = _run_training(task, p, out_path, progress, signals)
    history["signal"] = signals.received
    return model, history


def _run_training(task: ListTask, p: dict, out_path, progress: bool, signals: StopSignals):
    """Train a model for `task` with hyperparameters `p`, print its accuracy per family, save it to out_path.

    Ctrl-C or SIGTERM stops training early; the model reached so far is then saved beside out_path as
    *.interrupted.pt, so the finished checkpoint at out_path is never replaced by a partial one. A signal after
    training waits for the save (history["signal"] names the first one received). If the checkpoint cannot be
    written (a full disk, a folder no longer writable), it goes to the temporary folder and the message says
    where. Returns (model, history)."""
    model = Transformer(model_config(task, p))
    if p.get("uniform_attention"):
        freeze_uniform_attention(model)
    print(f"{task.name}: n={task.n}, V={task.V}, {sum(x.numel() for x in model.parameters())} parameters")
    snapshots = Snapshots()
    t0 = time.perf_counter()
    history = train(model, task.sample_batch, *held_out(task, p["eval_size"], p["seed"]),
                    max_steps=p["max_steps"], batch_size=p["batch_size"], lr=p["lr"],
                    weight_decay=p["weight_decay"], warmup_steps=p["warmup_steps"],
                    min_lr_frac=p["min_lr_frac"], grad_clip=p["grad_clip"], eval_every=p["eval_every"],
                    target_accuracy=p["target_accuracy"], family_target=p.get("target_family_accuracy"),
                    seed=p["seed"], device=p["device"], progress=progress, stop_families=stop_families(task),
                    snapshot_steps=snapshot_schedule(p["max_steps"], p.get("snapshots", 0)), on_snapshot=snapshots.keep,
                    stop_requested=lambda: signals.received is not None)
    seconds = time.perf_counter() - t0
    model.cpu().eval()
    families = task.families()
    accuracies = family_accuracies(model, families)
    if progress:
        print(accuracy_table(model, families))
    out_path = Path(out_path).with_suffix(".interrupted.pt") if history["interrupted"] else Path(out_path)
    committed = is_committed(out_path)
    metadata = dict(task=task.name, hyperparameters=p, history=history, train_seconds=seconds,
                    family_accuracy=accuracies, run_id=run_id(model))
    out_path = _save_somewhere(out_path, lambda path: save_checkpoint(path, model, **metadata))
    history["saved_to"] = str(out_path)
    print(f"{'interrupted after' if history['interrupted'] else 'trained in'} {seconds:.1f} s; saved {out_path}")
    if committed and history["saved_to"] == str(committed):
        print(f"note: this replaced the committed {committed.name} (git checkout -- {committed} brings it back; "
              "--out=PATH writes elsewhere)")
    snapshots.save(out_path, model, history, p.get("snapshots"), metadata["run_id"])
    print(training_verdict(history, accuracies, p["target_accuracy"], p.get("target_family_accuracy")))
    return model, history


class Snapshots:
    """The weights at the snapshot steps, kept in memory while training and written beside the checkpoint."""

    def __init__(self):
        self.steps, self.states = [], []

    def keep(self, step, model):
        self.steps.append(step)
        self.states.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})

    def save(self, out_path, model, history, count, identity):
        """With count = N > 0 the snapshots (and the last step) go to *.snapshots.pt; with 0 a snapshots file
        left there by an earlier run is removed. Snapshots that cannot be written are reported in one line."""
        path = snapshots_path(out_path)
        try:
            if count:
                if not self.steps or self.steps[-1] != history["stopped_at"]:
                    self.keep(history["stopped_at"], model)
                save_snapshots(path, model.cfg, self.steps, self.states, run_id=identity)
                print(f"saved {len(self.steps)} snapshots (steps {self.steps[0]}..{self.steps[-1]}) to {path}")
            elif path.exists():
                path.unlink()  # an earlier run's history must not pass for this model's
                print(f"removed {path} (an earlier run's snapshots; train with --snapshots=N to keep some)")
        except (OSError, RuntimeError) as e:
            print(f"could not write the snapshots to {path} ({save_error_reason(e)}); the model itself is "
                  f"saved at {out_path}", file=sys.stderr)


def is_committed(path):
    """The path, when it is a file git tracks in this repository (a committed checkpoint), else None."""
    path = Path(path).resolve()
    if not path.is_file():
        return None
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", path.name], cwd=path.parent,
                                 capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return None
    return path if tracked else None


def save_error_reason(error) -> str:
    """The OS's reason for a failed save: torch reports a full disk as a RuntimeError whose cause is the OSError."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__


def _save_somewhere(out_path, save):
    """save(out_path), or, if that fails, save into the temporary folder: a trained model is never lost while
    any disk can take it. Failing both, one line (SystemExit) says why."""
    try:
        save(out_path)
        return out_path
    except (OSError, RuntimeError) as e:
        reason = save_error_reason(e)
    try:
        fallback = Path(tempfile.mkdtemp(prefix="transformer-circuits-")) / out_path.name
        save(fallback)
    except (OSError, RuntimeError) as e:
        raise SystemExit(f"error: could not save the model to {out_path} ({reason}) nor to the temporary folder "
                         f"({save_error_reason(e)})") from None
    print(f"could not write {out_path} ({reason}); saved to {fallback} instead", file=sys.stderr)
    return fallback
