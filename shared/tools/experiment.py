"""A task's training run, what its training.py calls: every refusal one line before anything runs, then train, report
and save; a signal stops training after the step and saves the model reached (*.interrupted.pt)."""
import contextlib
import os
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
from .train import pick_device, train

SEED_MAX = 2 ** 62  # seeds feed torch.manual_seed with offsets added: this keeps them inside its 64 bits
CLI_LIMITS = dict(  # what every task's training.py (and the sweep) passes to shared.tools.cli.apply_overrides
    zero_ok=("weight_decay", "warmup_steps", "grad_clip", "seed", "snapshots"),
    at_most={"target_accuracy": 1.0, "target_family_accuracy": 1.0, "min_lr_frac": 1.0, "seed": SEED_MAX},
    choices={"normalization_type": ("LN", None), "act_fn": ("relu", "gelu"), "device": ("auto", "cpu", "cuda")},
    types={"d_mlp": int, "embed_std": float})


def model_config(task: ListTask, p: dict) -> Config:
    return Config(n_layers=p["n_layers"], n_heads=p["n_heads"], d_model=p["d_model"], d_head=p["d_head"],
                  d_mlp=p["d_mlp"], n_ctx=task.n + 1, d_vocab=task.V + 1, d_vocab_out=task.V, act_fn=p["act_fn"],
                  normalization_type=p["normalization_type"], init_scale=p["init_scale"], embed_std=p.get("embed_std"),
                  seed=p["seed"])


def main(task_factory, g: dict):
    """training.py: its globals `g` overridden by the command line, trained into `out` (relative to the script's
    folder); stopped by a signal, exit 128 + its number."""
    params = apply_overrides(g, **CLI_LIMITS)
    task, out_path = make_task(task_factory, params), check_writable(Path(g["__file__"]).parent / params["out"])
    with stop_signals() as late:  # outlives training's own: a signal on the way out is recorded, not raised
        _, history = run_training(task, params, out_path)
        if history["signal"] or late:
            raise SystemExit(128 + signal.Signals[history["signal"] or late[0]].value)
        if history["saved_to"] != str(out_path):  # saved, but not where asked (the message said where)
            raise SystemExit(1)


def make_task(task_factory, p: dict) -> ListTask:
    """The task for p's n and V, its families drawn once and p's device tried: refused in one line if they fail."""
    try:
        torch.zeros(1, device=pick_device(p["device"]))
    except (RuntimeError, AssertionError) as e:  # a CPU build of torch raises AssertionError for CUDA
        raise SystemExit(f"error: --device={p['device']}: not available here ({str(e).splitlines()[0]})") from None
    try:
        task = task_factory(p["n"], p["V"])
        draws = {**task.families(size=4), "a training batch": task.sample_batch(6, torch.Generator())}
        for name, (tokens, targets) in draws.items():
            if min(tokens[:, :-1].min(), targets.min()) < 0 or max(tokens[:, :-1].max(), targets.max()) >= task.V:
                raise ValueError(f"family {name!r} draws values outside 0..V-1")
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"error: --n={p['n']} --V={p['V']}: {str(e).splitlines()[0]}") from None
    return task


def check_writable(out_path) -> Path:
    """out_path, resolved; refused in one line when its folder cannot be created or written."""
    try:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=Path(out_path).parent).close()
    except OSError as e:
        raise SystemExit(f"error: --out={out_path}: cannot write there ({e.strerror or e})") from None
    return Path(out_path).resolve()


@contextlib.contextmanager
def stop_signals():
    """Inside, SIGINT and SIGTERM ask training to stop (checked before every step) instead of raising wherever they
    land, so a second Ctrl-C in the save cannot lose the model, nor a later one the exit; yields the names of those
    received (main thread)."""
    received = []

    def handle(signum, frame):
        print(f"\n{signal.Signals(signum).name}: " + ("already stopping, the model is being saved" if received else
              "stopping after this step; the model reached so far will be saved"), file=sys.stderr, flush=True)
        received.append(signal.Signals(signum).name)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        yield received
    finally:
        stopping = bool(received) or signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # or an inner one stopped
        for sig, handler in previous.items():  # once stopping, a later signal would kill the exit: ignore it
            signal.signal(sig, signal.SIG_IGN if stopping else handler)


def run_training(task: ListTask, p: dict, out_path, progress: bool = True):
    """Train a model for `task` with training.py's hyperparameters `p` into out_path (_save). Returns (model, history);
    history["signal"] names a signal that stopped it."""
    with stop_signals() as received:
        model, kept, t0 = Transformer(model_config(task, p)), [], time.perf_counter()
        if p.get("uniform_attention"):  # the averaging baseline: each query attends evenly to what it can see
            for weight in [w for b in model.blocks for w in (b.attn.W_Q, b.attn.W_K, b.attn.b_Q, b.attn.b_K)]:
                weight.requires_grad_(False).data.zero_()
        print(f"{task.name}: n={task.n}, V={task.V}, {sum(x.numel() for x in model.parameters())} parameters")
        keep = lambda step, now: kept.append((step, {k: v.detach().cpu().clone() for k, v in now.state_dict().items()}))
        history = train(model, task, p, progress, task.families(1000, seed=2), keep,  # apart from report and suite
                        lambda: bool(received))
        seconds = time.perf_counter() - t0
        if p.get("snapshots") and (not kept or kept[-1][0] != history["stopped_at"]):
            keep(history["stopped_at"], model)
        _save(task, p, Path(out_path), model.cpu().eval(), history, kept, seconds, progress)
    history["signal"] = (received or [None])[0]
    return model, history


def _save(task, p, out_path, model, history, kept, seconds, progress):
    """The accuracy per family, the checkpoint (stopped early: *.interrupted.pt; not writable: in the temporary folder;
    history["saved_to"]), p["snapshots"] snapshots beside it, the verdict line."""
    families = task.families()
    accuracies = family_accuracies(model, families)
    if progress:
        print(accuracy_table(model, families))
    out_path = out_path.with_suffix(".interrupted.pt") if history["interrupted"] else out_path
    restore, identity = restore_command(out_path), run_id(model)
    saved = _save_somewhere(out_path, lambda path: save_checkpoint(path, model, task=task.name, hyperparameters=p,
                            history=history, train_seconds=seconds, family_accuracy=accuracies, run_id=identity))
    history["saved_to"], snapshots = str(saved), snapshots_path(saved)
    print(f"{'interrupted after' if history['interrupted'] else 'trained in'} {seconds:.1f} s; saved {saved}")
    if restore and saved == out_path:
        print(f"note: this replaced the committed {out_path.name}; `{restore}` brings back the committed folder "
              "(the model, its snapshots, a saved program); --out=PATH writes elsewhere")
    try:
        if kept:
            save_snapshots(snapshots, model.cfg, *zip(*kept), run_id=identity)
            print(f"saved {len(kept)} snapshots (steps {kept[0][0]}..{kept[-1][0]}) to {snapshots}")
        elif snapshots.exists():
            snapshots.unlink()  # an earlier run's history must not pass for this model's
            print(f"removed {snapshots} (an earlier run's snapshots; train with --snapshots=N to keep some)")
    except (OSError, RuntimeError) as e:
        print(f"could not write the snapshots to {snapshots} ({reason(e)}); the model is saved", file=sys.stderr)
    print(training_verdict(history, accuracies, p))


def training_verdict(history, family_accuracy: dict, p: dict) -> str:
    """One line: whether training met its target, what it measured, the targets in brackets, the weakest family."""
    weakest = min(family_accuracy, key=family_accuracy.get)
    head = (f"target reached at step {history['target_reached']}" if history["target_reached"] is not None else
            f"target not reached: interrupted at step {history['stopped_at']}" if history["interrupted"] else
            f"target not reached by max_steps={history['stopped_at']}")
    each = f", and {p['target_family_accuracy']:.2%} on a fresh draw of every family" \
        if p.get("target_family_accuracy") is not None else ""
    held = f"held-out accuracy {history['eval_accuracy'][-1]:.2%}" if history["eval_accuracy"] else \
        "no held-out evaluation yet"  # stopped before the first eval_every steps
    return (f"{head}: {held} (target {p['target_accuracy']:.2%}{each}); weakest family in the report: {weakest} "
            f"{family_accuracy[weakest]:.2%}")


def restore_command(path: Path) -> str:
    """For a file git tracks (a committed checkpoint): the command, true from here, that restores its whole folder."""
    git = lambda *args: subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True, timeout=10)
    try:
        if not path.is_file() or git("ls-files", "--error-unmatch", path.name).returncode:
            return ""
        root, folder, here = Path(git("rev-parse", "--show-toplevel").stdout.strip()), path.parent, Path.cwd()
    except (OSError, subprocess.SubprocessError):
        return ""
    inside = root.resolve() in (here.resolve(), *here.resolve().parents)
    return f"git checkout -- {os.path.relpath(folder)}" if inside else f"git -C {folder.resolve()} checkout -- ."


def reason(error) -> str:
    """The OS's reason for a failed write (torch reports a full disk as a RuntimeError caused by the OSError)."""
    while not isinstance(error, OSError) and (error.__cause__ or error.__context__):
        error = error.__cause__ or error.__context__
    return (error.strerror if isinstance(error, OSError) else "") or str(error).strip().split("\n")[0]


def _save_somewhere(out_path: Path, save) -> Path:
    """save(out_path), or when that fails (a full disk) into the temporary folder, said in one line."""
    try:
        save(out_path)
        return out_path
    except (OSError, RuntimeError) as e:
        fallback = Path(tempfile.mkdtemp(prefix="transformer-circuits-")) / out_path.name
        save(fallback)
        print(f"could not write {out_path} ({reason(e)}); saved to {fallback} instead", file=sys.stderr)
        return fallback
