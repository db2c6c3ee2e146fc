# Two heads instead of one: do they share the selection? (published in across_seeds/)
#   python -m shared.tools.sweep find_min --recipe=two_heads --seeds=0-19 --jobs=2 --publish
n_heads = 2
