"""Checkpoints: the config, the weights and plain metadata, saved atomically and loaded without unpickling.

torch.load(weights_only=True) admits only tensors and plain containers, so a checkpoint cannot run code.
"""
import contextlib
import dataclasses
import hashlib
import math
import os
import pickle
import tempfile
from pathlib import Path

import torch

from .model import Config, Transformer

FORMAT = "transformer-circuits/1"
SNAPSHOT_FORMAT = "transformer-circuits-snapshots/1"
NUMBER = (int, float)
# What the notebooks and the sweep read from a trained model's metadata: checked in kind wherever present, and
# required when the caller names the task it expects (load_checkpoint(path, task=...)).
TRAINED_METADATA = {"task": str, "run_id": str, "train_seconds": NUMBER, "hyperparameters": dict, "history": dict}
HISTORY = {"step": list, "train_loss": list, "eval_loss": list, "eval_accuracy": list, "seconds": list,
           "stopped_at": int}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, not ours, or does not fit what the caller expects."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback: one line, as on the command line
        return [f"CheckpointError: {self}"]


def save_checkpoint(path, model: Transformer, **metadata):
    """Write {format, config, state_dict, metadata} to `path` via a temporary file and a rename, so an
    interrupted save leaves the previous file (or none), never a truncated one. Metadata must be plain
    (numbers, strings, lists, dicts, tensors)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_save(path, {"format": FORMAT, "config": dataclasses.asdict(model.cfg), "state_dict": state,
                        "metadata": metadata})


def atomic_write(path, write):
    """write(file) into a temporary file beside `path`, then rename it over `path`: a reader (or an interrupted
    save) sees the old file or the new one, never half of either, and concurrent writers never see each other's
    halves. No temporary file outlives the call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint or summary is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_save(path, payload):
    atomic_write(path, lambda f: torch.save(payload, f))


def run_id(model) -> str:
    """A hash of the weights: a checkpoint and its snapshots file both record it, so a snapshots file left by
    another run is recognised, and tests know which run a README table or a verdict documents."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def read_checkpoint(path, fmt=FORMAT, entries=(("config", dict), ("state_dict", dict), ("metadata", dict))) -> dict:
    """The checkpoint's payload, checked for form; raises CheckpointError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for it from {Path.cwd()})"
        raise CheckpointError(f"{path}: no such checkpoint file{where}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # an object to construct by importing code; torch's advice would be the unsafe load
            raise CheckpointError(f"{path}: refused as unsafe: it holds pickled Python objects, and a checkpoint "
                                  "may hold only tensors and plain containers") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (not a torch file of tensors)") from None
    except Exception as e:  # truncated zip, random bytes ...
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {fmt} file (no matching 'format' entry)")
    for key, kind in entries:
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint has no valid '{key}' entry")
    return payload


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _kind_error(value, kind) -> bool:
    """True when value is not of kind; a bool never is (no entry is a bool, and bool would pass for int)."""
    return isinstance(value, bool) or not isinstance(value, kind)


def check_metadata(path, metadata: dict, trained: bool):
    """Every known metadata entry of the right kind (history: lists of numbers, one entry per evaluation);
    with trained=True every one of them present. CheckpointError names the first that is not."""
    for key, kind in TRAINED_METADATA.items():
        if key not in metadata:
            if trained:
                raise CheckpointError(f"{path}: metadata has no '{key}' (a trained checkpoint records it)")
            continue
        if _kind_error(metadata[key], kind):
            raise CheckpointError(f"{path}: metadata '{key}' is a {type(metadata[key]).__name__}, expected "
                                  f"{kind.__name__ if isinstance(kind, type) else 'a number'}")
    history = metadata.get("history")
    if history is None:
        return
    lengths = set()
    for key, kind in HISTORY.items():
        if key not in history:
            if trained:
                raise CheckpointError(f"{path}: metadata history has no '{key}'")
            continue
        value = history[key]
        if _kind_error(value, kind) or (kind is list and any(_kind_error(x, NUMBER) or not math.isfinite(x)
                                                             for x in value)):
            raise CheckpointError(f"{path}: metadata history '{key}' must be "
                                  f"{'a list of finite numbers' if kind is list else 'an int'}")
        if kind is list:
            lengths.add(len(value))
    if len(lengths) > 1:
        raise CheckpointError(f"{path}: metadata history lists differ in length ({sorted(lengths)})")


def load_checkpoint(path, device="cpu", task=None, **expected) -> Transformer:
    """The model saved at `path`, in eval mode, with model.cfg and model.metadata restored.

    task: the task the caller expects the checkpoint to be trained for (its metadata["task"]); its metadata
    must then hold everything a trained checkpoint records (TRAINED_METADATA, HISTORY). Keyword
    arguments name config fields the caller relies on, e.g. load_checkpoint(p, n_ctx=11, d_vocab=65). A
    checkpoint of another task or with another config raises CheckpointError, as does one whose weights
    do not fit its own config, are not float32 or are not finite.
    """
    payload = read_checkpoint(path)
    check_metadata(path, payload["metadata"], trained=task is not None)
    if task is not None and payload["metadata"].get("task") != task:
        raise CheckpointError(f"{path}: a checkpoint of task {payload['metadata'].get('task')!r}, "
                              f"expected {task!r}")
    model = _build(path, payload["config"], payload["state_dict"], expected)
    model.metadata = payload["metadata"]
    return model.to(device).eval()


def _build(path, config: dict, state: dict, expected: dict, dtype=torch.float32) -> Transformer:
    """The Transformer of `config` holding `state`, after checking both (CheckpointError otherwise): every
    weight of the config's shape, of `dtype` and finite."""
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = set(config) - known
    if unknown:
        raise CheckpointError(f"{path}: config has unknown fields {sorted(unknown)}")
    try:
        cfg = Config(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid config ({e})") from None
    for name, value in expected.items():
        if name not in known:
            raise TypeError(f"load_checkpoint: {name!r} is not a Config field")
        if getattr(cfg, name) != value:
            raise CheckpointError(f"{path}: config mismatch: {name}={getattr(cfg, name)!r}, expected {value!r}")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: weights are a {type(state).__name__}, not a name -> tensor mapping")
    model = Transformer(cfg)
    own = model.state_dict()
    if set(state) != set(own):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise CheckpointError(f"{path}: weights do not match the config (missing {missing[:3]}, "
                              f"unexpected {extra[:3]})")
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != own[name].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: weight {name} has shape {shape}, config implies "
                                  f"{tuple(own[name].shape)}")
        if tensor.dtype != dtype:
            raise CheckpointError(f"{path}: weight {name} is {tensor.dtype}, expected {dtype}")
        bad = (~torch.isfinite(tensor)).sum().item()
        if bad:
            raise CheckpointError(f"{path}: weight {name} has {bad} non-finite value(s) (NaN or inf)")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def beside(path, model) -> tuple:
    """(the model saved at `path` if it reads the same lists as `model`, "") or (None, the one-line reason): a
    baseline or a comparison model a notebook shows beside the one it loaded."""
    try:
        return load_checkpoint(path, n_ctx=model.cfg.n_ctx, d_vocab=model.cfg.d_vocab), ""
    except CheckpointError as error:
        return None, str(error)


def snapshots_path(checkpoint_path) -> Path:
    """Where training keeps the snapshots of the checkpoint at checkpoint_path: beside it, its suffix replaced
    by .snapshots.pt (model.pt -> model.snapshots.pt, run.ckpt -> run.snapshots.pt)."""
    return Path(checkpoint_path).with_suffix(".snapshots.pt")


def save_snapshots(path, cfg: Config, steps, states, run_id: str = ""):
    """Weights at several training steps, in float16 (half the size; the measures taken on them do not need
    more precision), in one file written atomically. run_id names the run they come from (the checkpoint's
    metadata["run_id"]), so that load_snapshots can refuse another run's file."""
    if len(steps) != len(states):
        raise ValueError("one state dict per step")
    half = [{k: v.detach().cpu().to(torch.float16) for k, v in state.items()} for state in states]
    _atomic_save(path, {"format": SNAPSHOT_FORMAT, "config": dataclasses.asdict(cfg), "steps": list(steps),
                        "state_dicts": half, "run_id": run_id})


def load_snapshots(path, run_id=None, **expected) -> list:
    """[(step, model)] from save_snapshots, in step order; the same checks and errors as load_checkpoint.

    run_id (the checkpoint's metadata["run_id"]): refuse, with one line, a missing file or one saved by
    another run, so a notebook never shows an earlier model's history as this one's."""
    if run_id is not None:
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: no snapshots for this model: train with --snapshots=N")
        theirs = read_checkpoint(path, SNAPSHOT_FORMAT, (("steps", list),)).get("run_id")
        if theirs != run_id:
            raise CheckpointError(f"{path}: these snapshots are another run's (run {theirs}, this model is run "
                                  f"{run_id}): retrain with --snapshots=N to replace them")
    payload = read_checkpoint(path, SNAPSHOT_FORMAT, (("config", dict), ("steps", list), ("state_dicts", list)))
    if len(payload["steps"]) != len(payload["state_dicts"]):
        raise CheckpointError(f"{path}: {len(payload['steps'])} steps but {len(payload['state_dicts'])} snapshots")
    return [(step, _build(path, payload["config"], state, expected, dtype=torch.float16))
            for step, state in zip(payload["steps"], payload["state_dicts"])]


def snapshots_of(checkpoint_path, model) -> tuple:
    """(the snapshots of this very run [(step, model)], "") from beside its checkpoint, or (None, the one-line
    reason there are none): what a notebook's formation section reads."""
    try:
        return load_snapshots(snapshots_path(checkpoint_path), run_id=model.metadata.get("run_id", "?")), ""
    except CheckpointError as error:
        return None, str(error)
