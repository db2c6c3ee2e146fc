"""Train the find_median model and save it to checkpoints/model.pt (beside this file).

    python find_median/training.py                      # the defaults below: the committed checkpoint
    python find_median/training.py --lr=1e-3 --seed=1   # any value below can be overridden like this
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `shared` and this task, from anywhere

# --- hyperparameters: edit here, or override with --name=value -----------------------------------------
n = 7                       # list length (odd)
V = 64                      # values 0..V-1; the separator token is V
n_layers = 2                # layer 0 gathers the whole list at SEP, layer 1 selects the median
n_heads = 1
d_model = 32                # 64 (with d_mlp = 256) learnt the same mechanism, at twice the time per step
d_head = 32
d_mlp = 128                 # None: attention-only
act_fn = "relu"
normalization_type = None   # "LN" or None
uniform_attention = False   # True: freeze every attention to uniform (the averaging baseline the README reports)
init_scale = 1.0
embed_std = None            # std of W_E and W_pos at init; None: init_scale / sqrt(d_model), like every weight
batch_size = 512
max_steps = 2500
lr = 1e-2
weight_decay = 0.0
warmup_steps = 200
min_lr_frac = 0.02          # the cosine schedule ends at lr * min_lr_frac: ending low settles the hardest families
grad_clip = 1.0
eval_every = 100
eval_size = 4096            # held-out samples from the training distribution
target_accuracy = 0.999     # stop early once the held-out accuracy reaches this, and
target_family_accuracy = 0.998  # a fresh draw of every evaluation family (1,000 lists each) this: 100% on every
                            # family is almost never met (rare errors on 11 draws), 99.8% is the bar (99%) with room
seed = 0                    # fixes the weights and the data stream
snapshots = 12              # keep weights at ~N log-spaced steps in <out>.snapshots.pt (0: none)
device = "auto"             # "auto" takes CUDA when present
out = "checkpoints/model.pt"  # relative to this folder
# ---------------------------------------------------------------------------------------------------------

if __name__ == "__main__":
    import importlib

    from shared.tools.experiment import main

    main(importlib.import_module(f"{Path(__file__).resolve().parent.name}.dataset").task, globals())
