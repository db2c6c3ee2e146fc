# The averaging baseline the notebook and README compare with: one head whose attention is frozen uniform, so
# the model can only average the list at SEP and read the median off that average.
#   python find_median/training.py find_median/recipes/averaging.py
n_layers = 1
d_model = 64                # wider than the default model: the baseline gets every chance (at 32 it follows the
d_head = 64                 # ideal averaging score on 95% of lists, at 64 on 99%)
d_mlp = None
uniform_attention = True
max_steps = 3000
snapshots = 0
out = "checkpoints/averaging.pt"
