# W_E and W_pos at unit std, the initialisation this project started with: some seeds then average in layer 0
# and decode the median in the MLPs. (published in across_seeds/)
#   python -m shared.tools.sweep find_median --recipe=unit_embeddings --seeds=0-19 --jobs=2 --publish
embed_std = 1.0
