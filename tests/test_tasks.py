"""Every task folder's data, found by convention: the token format, the families and the training mix."""
import importlib

import pytest
import torch

from shared.published import task_names


@pytest.mark.parametrize("name", task_names())
def test_every_family_is_in_the_token_format(name):
    T = importlib.import_module(f"{name}.dataset").task()
    families = T.families(size=300)
    assert len(families.labels) == len(families) >= 6  # every family has a short key beside its label
    for label, (tokens, targets) in families.items():
        assert tokens.shape == (300, T.n + 1) and (tokens[:, -1] == T.V).all(), label
        assert ((tokens[:, :-1] >= 0) & (tokens[:, :-1] < T.V)).all(), label
        assert torch.equal(targets, T.answer(tokens[:, :-1])), label
    _, targets = T.sample_batch(30000, torch.Generator().manual_seed(0))
    assert (torch.bincount(targets, minlength=T.V) > 30000 / T.V / 4).all()  # every answer value is trained on
    if T.order_statistic is not None:
        values = tokens[:, :-1]
        assert torch.equal(T.answer(values), values.sort(-1).values[:, T.order_statistic])


def test_collecting_mistakes_finds_exactly_the_wrong_lists():
    """min_model answers the minimum; asked for the maximum, it is wrong exactly where the two differ."""
    from handbuilt import min_model

    from shared.tasks import ListTask, collect_mistakes
    uniform = lambda size, n, V, gen: torch.randint(0, V, (size, n), generator=gen)
    maximum = ListTask("max", lambda v: v.max(-1).values, uniform, lambda *a: {}, uniform, 4, 8)
    found = collect_mistakes(min_model(4, 8), maximum, lists=3000, chunk=1000)
    assert found and all(max(values) == target and min(values) == predicted != target
                         for _, values, target, predicted in found)
    gen = torch.Generator().manual_seed(10_007)
    values = torch.cat([maximum.sample_batch(1000, gen)[0][:, :-1] for _ in range(3)])
    assert len(found) == (values.max(-1).values != values.min(-1).values).sum().item()
