import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch
from matplotlib.figure import Figure

from shared.plotting import attention_patterns, heatmap, neuron_responses, training_curves


def test_attention_grid():
    patterns = torch.rand(2, 3, 4, 4).tril()
    patterns = patterns / patterns.sum(-1, keepdim=True)
    fig = attention_patterns(patterns, torch.tensor([5, 1, 7, 9]), sep_token=9)
    assert isinstance(fig, Figure)
    heads = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heads] == [f"L{l}H{h}" for l in range(2) for h in range(3)]
    assert len(fig.axes) == 7  # six heads and one colour bar
    ax = heads[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5 (0)", "1 (1)", "7 (2)", "SEP (3)"]
    assert ax.get_xlabel().startswith("source") and ax.get_ylabel().startswith("destination")
    image = ax.images[0]
    assert image.get_clim() == (0, 1)
    assert np.ma.getmaskarray(image.get_array())[0, 1] and not np.ma.getmaskarray(image.get_array())[1, 0]


def test_heatmap_and_curves():
    fig = heatmap(torch.randn(5, 4), "key value", "query value", title="t", xticks=list("abcd"), center=0)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "key value" and [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    low, high = ax.images[0].get_clim()
    assert low == -high
    fig = training_curves({"step": [1, 2], "train_loss": [1.0, 0.5], "eval_loss": [1.1, 0.4],
                           "eval_accuracy": [0.5, 0.9]})
    assert fig.axes[1].lines[0].get_ydata()[-1] == 90


def test_neuron_responses():
    responses = torch.randn(5, 10)
    fig = neuron_responses(responses, responses.cumsum(1), [f"neuron {j}" for j in range(5)], ncols=3)
    drawn = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in drawn] == [f"neuron {j}" for j in range(5)]
    assert len(fig.axes) == 6 and not fig.axes[5].axison  # the spare panel is blank
    dots, line = drawn[2].lines
    assert np.allclose(dots.get_ydata(), responses[2].numpy()) and drawn[2].get_xlabel() == "token value v"
