# No MLPs: does the layer-1 head still select the median without them? (published in across_seeds/)
#   python -m shared.tools.sweep find_median --recipe=attention_only --seeds=0-19 --jobs=2 --publish
d_mlp = None
