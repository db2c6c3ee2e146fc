"""Transformer Circuits: the model, training loop, checkpoints and circuit tools every task imports."""
from .checkpoint import (CheckpointError, load_checkpoint, load_snapshots, save_checkpoint, save_snapshots,
                         snapshots_path)
from .model import ActivationCache, Config, HookPoint, Transformer

__all__ = ["ActivationCache", "CheckpointError", "Config", "HookPoint", "Transformer", "load_checkpoint",
           "load_snapshots", "save_checkpoint", "save_snapshots", "snapshots_path"]
