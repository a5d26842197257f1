"""Training-state and release checkpoints: atomic, weights_only, strict."""

import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from latentlm.checkpoint import (
    load_release,
    load_state_dict_strict,
    load_training_state,
    rng_state,
    save_release,
    save_training_state,
    set_rng_state,
)


@dataclass
class TinyConfig:
    dim: int = 4


def test_release_round_trip_and_strictness(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    save_release(tmp_path / "rel", m, TinyConfig(), meta={"note": "x"}, kind="tiny")
    sd, cfg, meta = load_release(tmp_path / "rel", kind="tiny")
    assert cfg == {"dim": 4} and meta == {"note": "x"}
    m2 = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    load_state_dict_strict(m2, sd)
    x = torch.randn(3, 4)
    assert torch.equal(m(x), m2(x))
    with pytest.raises(ValueError, match="shape mismatch"):
        load_state_dict_strict(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3)), sd)
    with pytest.raises(ValueError, match="missing"):
        load_state_dict_strict(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(2, 2)), sd)
    with pytest.raises(ValueError, match="expected 'other'"):
        load_release(tmp_path / "rel", kind="other")
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        load_release(tmp_path)


def test_training_state_restores_rng_exactly(tmp_path):
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    state = {"step": 5, "rng": rng_state(), "w": torch.arange(3.0)}
    expected = (torch.rand(2), random.random(), np.random.rand())
    save_training_state(tmp_path / "s.pt", state)
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    loaded = load_training_state(tmp_path / "s.pt")
    set_rng_state(loaded["rng"])
    got = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1] and got[2] == expected[2]
    assert loaded["step"] == 5 and torch.equal(loaded["w"], torch.arange(3.0))


def test_untrusted_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="cannot load"):
        load_training_state(tmp_path / "evil.pt")


def test_truncated_checkpoint_is_clear_error(tmp_path):
    save_training_state(tmp_path / "s.pt", {"w": torch.randn(100)})
    data = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "s.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot load"):
        load_training_state(tmp_path / "s.pt")
