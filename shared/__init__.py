"""Transformer Circuits: the model, checkpoints and circuit tools every task imports (the tools that run jobs, such
as training, are in shared.tools)."""
from .checkpoint import (CheckpointError, load_checkpoint, load_snapshots, save_checkpoint, save_snapshots,
                         snapshots_of, snapshots_path)
from .model import ActivationCache, Config, HookPoint, Transformer

__all__ = ["ActivationCache", "CheckpointError", "Config", "HookPoint", "Transformer", "load_checkpoint",
           "load_snapshots", "save_checkpoint", "save_snapshots", "snapshots_of", "snapshots_path"]
