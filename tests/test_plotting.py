import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch
from matplotlib.figure import Figure

from matplotlib.colors import PowerNorm

from shared.plotting import (attention_patterns, heatmap, neuron_responses, progress_curves,
                             training_curves)


def smallest_text(fig) -> float:
    """The smallest font of any tick label or legend entry in the figure (colour bars included)."""
    sizes = [label.get_fontsize() for ax in fig.axes for label in ax.get_xticklabels() + ax.get_yticklabels()
             if label.get_text()]
    sizes += [text.get_fontsize() for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if legend
              for text in legend.get_texts()]
    return min(sizes)


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
    assert image.get_clim() == (0, 1) and isinstance(image.norm, PowerNorm)
    assert np.ma.getmaskarray(image.get_array())[0, 1] and not np.ma.getmaskarray(image.get_array())[1, 0]
    # a uniform row (1/4 here) is visible: a third of the way up the colour scale, not near white; it is marked
    assert 0.3 < image.norm(0.25) < 0.7 and image.norm(0.9) > 0.9
    colorbar = fig.axes[-1]
    assert "1/4 uniform" in [t.get_text() for t in colorbar.get_yticklabels()]
    # SEP's row, the query that reads the answer, is framed and its label set apart
    frames = [p for p in ax.patches if p.get_y() == 3 - 0.5 and p.get_height() == 1]
    assert len(frames) == 1 and ax.get_yticklabels()[3].get_fontweight() == "bold"
    assert smallest_text(fig) >= 9


def test_heatmap_and_curves():
    fig = heatmap(torch.randn(5, 4), "key value", "query value", title="t", xticks=list("abcd"), center=0)
    assert smallest_text(fig) >= 9
    ax = fig.axes[0]
    assert ax.get_xlabel() == "key value" and [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    low, high = ax.images[0].get_clim()
    assert low == -high
    fig = training_curves({"step": [1, 2], "train_loss": [1.0, 0.5], "eval_loss": [1.1, 0.4],
                           "eval_accuracy": [0.5, 0.9]})
    assert fig.axes[1].lines[0].get_ydata()[-1] == 90 and smallest_text(fig) >= 9


def test_progress_curves_stack_their_panels_legibly():
    series = {"step": [0, 10, 100], "accuracy: uniform lists": [0.1, 0.5, 1.0], "attention on answer: L0H0":
              [0.1, 0.9, 1.0], "accuracy with L0H0 ablated": [0.1, 0.1, 0.1]}
    history = {"step": [0, 10, 100], "train_loss": [4, 1, 0.1], "eval_loss": [4, 1.2, 0.1]}
    panels = {"accuracy": ["accuracy: uniform lists"], "attention": ["attention on answer: L0H0"],
              "ablations": ["accuracy with L0H0 ablated"]}
    fig = progress_curves(series, history, panels, {"attention on answer: L0H0": 10}, title="t")
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes] == ["loss", *panels]
    x0 = {round(ax.get_position().x0, 3) for ax in fig.axes}
    assert len(x0) == 1  # one column: the panels are stacked, one above the other
    width, height = fig.get_size_inches()
    assert width <= 9 and height > width / 2 and smallest_text(fig) >= 9
    assert fig.axes[2].lines[1].get_xdata()[0] == 10  # the formation mark


def test_neuron_responses():
    responses = torch.randn(5, 10)
    fig = neuron_responses(responses, responses.cumsum(1), [f"neuron {j}" for j in range(5)], ncols=3)
    drawn = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in drawn] == [f"neuron {j}" for j in range(5)]
    assert len(fig.axes) == 6 and not fig.axes[5].axison  # the spare panel is blank
    dots, line = drawn[2].lines
    assert np.allclose(dots.get_ydata(), responses[2].numpy()) and drawn[2].get_xlabel() == "token value v"
    assert smallest_text(fig) >= 9 and fig.get_size_inches()[0] <= 9
