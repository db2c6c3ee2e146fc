"""Train the find_min model and save it to checkpoints/model.pt (beside this file).

    python find_min/training.py                      # the defaults below: the committed checkpoint
    python find_min/training.py --lr=1e-3 --seed=1   # any value below can be overridden like this
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `shared` and this task, from anywhere

# --- hyperparameters: edit here, or override with --name=value -----------------------------------------
n = 10                      # list length
V = 64                      # values 0..V-1; the separator token is V
n_layers = 1                # 1 layer, 1 head, no MLP, no LayerNorm: the smallest model with a clean circuit
n_heads = 1
d_model = 64
d_head = 64
d_mlp = None                # None: attention-only
act_fn = "relu"
normalization_type = None   # "LN" or None
init_scale = 1.0
embed_std = None            # std of W_E and W_pos at init; None: init_scale / sqrt(d_model), like every weight
batch_size = 512
max_steps = 2000
lr = 3e-3
weight_decay = 0.0
warmup_steps = 50
min_lr_frac = 0.1           # the cosine schedule ends at lr * min_lr_frac
grad_clip = 1.0
eval_every = 100
eval_size = 4096            # held-out samples from the training distribution
target_accuracy = 1.0       # stop early once the held-out accuracy reaches this
seed = 0                    # fixes the weights and the data stream
snapshots = 24              # keep weights at ~N log-spaced steps in <out>.snapshots.pt (0: none)
device = "auto"             # "auto" takes CUDA when present
out = "checkpoints/model.pt"  # relative to this folder
# ---------------------------------------------------------------------------------------------------------

if __name__ == "__main__":
    import importlib

    from shared.tools.experiment import main

    main(importlib.import_module(f"{Path(__file__).resolve().parent.name}.dataset").task, globals())
