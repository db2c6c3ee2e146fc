import dataclasses
import os
import re

import pytest
import torch

import shared.checkpoint as ckpt
from shared import CheckpointError, Config, Transformer, load_checkpoint, save_checkpoint

CFG = Config(n_layers=2, n_heads=2, d_model=16, d_head=8, d_mlp=32, n_ctx=5, d_vocab=7, d_vocab_out=6,
             normalization_type="LN", seed=3)


@pytest.fixture
def saved(tmp_path):
    model = Transformer(CFG)
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, task="toy", history={"step": [1, 2], "eval_accuracy": [0.5, 0.75]})
    return model, path


def assert_one_line_error(path, match, **expected):
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, **expected)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    x = torch.randint(0, 7, (4, 5))
    assert loaded.cfg == model.cfg
    assert not loaded.training
    assert torch.equal(loaded(x), model.eval()(x))
    assert loaded.metadata["history"]["eval_accuracy"] == [0.5, 0.75]
    assert load_checkpoint(path, n_ctx=5, d_vocab=7).cfg.n_ctx == 5


def test_missing(tmp_path):
    assert_one_line_error(tmp_path / "nope.pt", "no such checkpoint file")


def test_truncated(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:1000])
    assert_one_line_error(path, "not a readable checkpoint")


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    assert_one_line_error(junk, "not a readable checkpoint")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    assert_one_line_error(tensor, "not a transformer-circuits/1 file")
    no_weights = tmp_path / "no_weights.pt"
    torch.save({"format": ckpt.FORMAT, "config": {}, "state_dict": [], "metadata": {}}, no_weights)
    assert_one_line_error(no_weights, "no valid 'state_dict'")


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


def test_pickled_code_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "config": {}, "state_dict": {}, "metadata": {"x": Exploit()}}, path)
    message = assert_one_line_error(path, "refused as unsafe: it holds pickled Python objects")
    assert "weights_only" not in message  # torch's own message suggests the unsafe weights_only=False
    assert not (tmp_path / "exploited").exists()


def test_config_mismatch(saved, tmp_path):
    _, path = saved
    assert_one_line_error(path, "config mismatch: n_ctx=5, expected 11", n_ctx=11)
    payload = torch.load(path, weights_only=True)
    payload["config"]["d_model"] = 32  # weights no longer fit the config
    bad = tmp_path / "bad_shape.pt"
    torch.save(payload, bad)
    assert_one_line_error(bad, "has shape")
    payload["config"] = dataclasses.asdict(CFG) | {"n_layers": 1}
    fewer = tmp_path / "fewer_layers.pt"
    torch.save(payload, fewer)
    assert_one_line_error(fewer, "weights do not match the config")
    payload["config"] = dataclasses.asdict(CFG) | {"n_heads": -1}
    invalid = tmp_path / "invalid.pt"
    torch.save(payload, invalid)
    assert_one_line_error(invalid, "invalid config")


def test_interrupted_save_keeps_previous_file(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def dies_halfway(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, Transformer(dataclasses.replace(CFG, seed=9)))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.pt"]


def resaved(path, tmp_path, name, change):
    """A copy of the checkpoint at `path` with change(payload) applied."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    out = tmp_path / name
    torch.save(payload, out)
    return out


@pytest.mark.parametrize("field, value, message", [
    ("d_model", True, "Config.d_model must be a positive int, got True"),
    ("init_scale", "1.0", "Config.init_scale must be a positive finite number, got '1.0'"),
    ("init_scale", float("nan"), "Config.init_scale must be a positive finite number"),
    ("n_heads", 0, "Config.n_heads must be a positive int"),
    ("d_mlp", 2.5, "Config.d_mlp must be None or a positive int"),
    ("seed", -1, "Config.seed must be an int"),
    ("embed_std", "big", "Config.embed_std must be None or a positive finite number"),
    ("act_fn", "tanh", "Config.act_fn must be 'relu' or 'gelu'"),
])
def test_config_of_the_wrong_kind_is_refused(saved, tmp_path, field, value, message):
    _, path = saved
    bad = resaved(path, tmp_path, "bad.pt", lambda p: p["config"].update({field: value}))
    assert_one_line_error(bad, re.escape(message))


def test_weights_that_are_not_finite_float32_are_refused(saved, tmp_path):
    _, path = saved
    nan = resaved(path, tmp_path, "nan.pt", lambda p: p["state_dict"]["embed.W_E"].fill_(float("nan")))
    assert_one_line_error(nan, r"weight embed.W_E has 112 non-finite value\(s\)")
    double = resaved(path, tmp_path, "double.pt", lambda p: p["state_dict"].update(
        {"unembed.W_U": p["state_dict"]["unembed.W_U"].double()}))
    assert_one_line_error(double, "weight unembed.W_U is torch.float64, expected torch.float32")


def test_metadata_is_checked_in_kind_and_a_trained_checkpoint_must_have_it(saved, tmp_path):
    _, path = saved
    assert_one_line_error(path, "metadata has no 'run_id'", task="toy")  # the notebooks read run_id, history, ...
    wrong = resaved(path, tmp_path, "wrong.pt", lambda p: p["metadata"].update(run_id=7))
    assert_one_line_error(wrong, "metadata 'run_id' is a int, expected str")
    history = resaved(path, tmp_path, "history.pt", lambda p: p["metadata"]["history"].update(step=[1, "two"]))
    assert_one_line_error(history, "metadata history 'step' must be a list of finite numbers")
    ragged = resaved(path, tmp_path, "ragged.pt", lambda p: p["metadata"]["history"].update(step=[1]))
    assert_one_line_error(ragged, r"metadata history lists differ in length \(\[1, 2\]\)")
