"""Matplotlib figures for the notebooks. Every function returns its Figure, so scripts can save it and
tests can inspect it; nothing here calls plt.show()."""
import matplotlib.pyplot as plt
import numpy as np
import torch

from .components import head_name


def _np(x):
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def token_labels(tokens, sep_token=None):
    """Tick labels 'tok (idx)'; the separator shows as SEP."""
    tokens = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    return [f"{'SEP' if t == sep_token else t} ({i})" for i, t in enumerate(tokens)]


def attention_patterns(patterns, tokens, sep_token=None, title=None, gamma=0.5):
    """Grid of every head's pattern on one input, as CircuitsVis draws them.

    patterns: [n_layers, n_heads, query_pos, key_pos] (one input). Keys (sources) on x, queries
    (destinations) on y, the causally masked upper triangle in grey, SEP's row (the query that reads the
    answer) framed in red. The 0-1 colour scale is a power law (gamma, 1 = linear) so that a spread row
    stays visible: with 0.5 the uniform share 1/P of the last row, marked on the colour bar, sits a third of
    the way up instead of near white.
    """
    from matplotlib.colors import PowerNorm
    patterns = _np(patterns)
    L, H, P, _ = patterns.shape
    labels = token_labels(tokens, sep_token)
    cell = min(0.45, 7.0 / (P * H))  # inches per position, so the grid stays within a notebook's width
    fig, axes = plt.subplots(L, H, figsize=(cell * P * H + 1.8, cell * P * L + 1.0), squeeze=False,
                             constrained_layout=True)
    masked = np.triu(np.ones((P, P), dtype=bool), k=1)
    cmap = plt.get_cmap("Blues").with_extremes(bad="0.85")  # grey: masked by causality
    sep_rows = [i for i, label in enumerate(labels) if label.startswith("SEP ")]
    for l in range(L):
        for h in range(H):
            ax = axes[l, h]
            image = ax.imshow(np.ma.masked_where(masked, patterns[l, h]), cmap=cmap,
                              norm=PowerNorm(gamma, vmin=0, vmax=1))
            ax.set_title(head_name(l, h), fontsize=11)
            ax.set_xticks(range(P), labels, rotation=90, fontsize=9)
            ax.set_yticks(range(P), labels, fontsize=9)
            for row in sep_rows:
                ax.add_patch(plt.Rectangle((-0.5, row - 0.5), P, 1, fill=False, edgecolor="C3", linewidth=2))
                ax.get_yticklabels()[row].set(color="C3", fontweight="bold")
            ax.set_xlabel("source (key)", fontsize=10)
            ax.set_ylabel("destination (query)", fontsize=10)
    bar = fig.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label("attention (power scale)", fontsize=10)
    bar.set_ticks(sorted({0, 1 / P, 0.25, 0.5, 1}), labels=[f"{t:g}" if t != 1 / P else f"1/{P} uniform"
                                                           for t in sorted({0, 1 / P, 0.25, 0.5, 1})], fontsize=9)
    bar.ax.axhline(1 / P, color="C3", linewidth=1.5)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def heatmap(matrix, xlabel, ylabel, title=None, xticks=None, yticks=None, center=None, cmap=None,
            colorbar_label=None, figsize=(6, 5)):
    """A labelled heatmap, e.g. a vocab x vocab circuit. With `center`, a diverging map centred there."""
    matrix = _np(matrix)
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    if center is not None:
        span = max(np.abs(matrix - center).max(), 1e-12)
        image = ax.imshow(matrix, cmap=cmap or "RdBu_r", vmin=center - span, vmax=center + span,
                          aspect="auto")
    else:
        image = ax.imshow(matrix, cmap=cmap or "viridis", aspect="auto")
    for ticks, setter in ((xticks, ax.set_xticks), (yticks, ax.set_yticks)):
        if ticks is not None:
            positions, labels = ticks if isinstance(ticks, tuple) else (range(len(ticks)), ticks)
            setter(list(positions), list(labels), fontsize=9)
    ax.tick_params(labelsize=9)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    if title:
        ax.set_title(title, fontsize=11)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(colorbar_label, fontsize=10)
    bar.ax.tick_params(labelsize=9)
    return fig


def training_curves(history, title=None):
    """Loss (log scale) and held-out accuracy against the training step."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8.5, 3.2), constrained_layout=True)
    ax_loss.plot(history["step"], history["train_loss"], label="train")
    ax_loss.plot(history["step"], history["eval_loss"], label="held-out")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend(fontsize=9)
    ax_acc.plot(history["step"], np.asarray(history["eval_accuracy"]) * 100)
    ax_acc.set_ylabel("held-out accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("step")
        ax.tick_params(labelsize=9)
    if title:
        fig.suptitle(title)
    return fig


def progress_curves(series, history, panels: dict, marks: dict = None, title=None, width=8.0):
    """The loss curve above progress measures against the training step, one panel per row on a shared
    symlog x (so step 0 shows), each legend beside its panel.

    series: {"step": [...], measure: [...]} (shared.progress.track); panels: {panel title: [measures]};
    marks: {measure: step} drawn as a dotted line in the measure's colour (when it formed); width: inches.
    """
    marks = marks or {}
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(width, 1.9 * (len(panels) + 1) + 0.6), sharex=True,
                             constrained_layout=True)
    axes[0].plot(history["step"], history["train_loss"], label="train")
    axes[0].plot(history["step"], history["eval_loss"], label="held-out")
    axes[0].set_yscale("log")
    axes[0].set_title("loss", fontsize=10)
    for ax, (panel, names) in zip(axes[1:], panels.items()):
        for name in names:
            line, = ax.plot(series["step"], series[name], marker=".", label=name)
            if marks.get(name) is not None:
                ax.axvline(marks[name], color=line.get_color(), ls=":", lw=1.2)
        ax.set_title(panel, fontsize=10)
    for ax in axes:
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.tick_params(labelsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axes[-1].set_xlabel("step")
    if title:
        fig.suptitle(title)
    return fig


def neuron_responses(responses, fitted, titles, xlabel="token value v", ylabel="response", ncols=4, title=None):
    """Small multiples: each neuron's response to each token (dots) and the shape fitted to it (line).
    responses, fitted: [neurons, d_vocab]; titles: one per neuron."""
    responses, fitted = _np(responses), _np(fitted)
    rows = max(1, -(-len(responses) // ncols))
    fig, axes = plt.subplots(rows, ncols, figsize=(min(2.2 * ncols, 9.0), 2.1 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    for ax, response, fit, name in zip(axes.flat, responses, fitted, titles):
        ax.plot(range(len(response)), response, ".", ms=3, label="from the weights")
        ax.plot(range(len(fit)), fit, lw=1, label="fitted shape")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=9)
    for ax in list(axes.flat)[len(responses):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=9)
    if title:
        fig.suptitle(title)
    return fig
