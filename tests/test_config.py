"""Typed config loading: YAML + dotted overrides, unknown keys rejected, round trip through dicts."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from latentlm.config import ConfigError, from_dict, load_config, save_config, to_dict


@dataclass
class Inner:
    dim: int = 8
    lr: float = 1e-3
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    act: Literal["gelu", "silu"] = "silu"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "x"
    limit: int | None = None
    heads: dict[str, Inner] = field(default_factory=dict)


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  dim: 16\nname: from_yaml\n")
    cfg = load_config(Outer, p, ["inner.lr=3e-4", "inner.sizes=[4, 5]", "limit=7", "heads.audio.dim=3"])
    assert cfg.inner.dim == 16 and cfg.inner.lr == pytest.approx(3e-4) and cfg.inner.sizes == [4, 5]
    assert cfg.name == "from_yaml" and cfg.limit == 7
    assert isinstance(cfg.heads["audio"], Inner) and cfg.heads["audio"].dim == 3


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["inner.dimm=3"], "unknown key"),
        (["nope=1"], "unknown key"),
        (["inner.dim=1.5"], "expected an int"),
        (["inner.act=relu"], "not one of"),
        (["name.x=1"], "not a section"),
        (["inner.dim"], "key.path=value"),
    ],
)
def test_bad_overrides_are_errors(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(Outer, None, overrides)


def test_unknown_key_in_file_is_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  dim: 16\n  typo: 1\n")
    with pytest.raises(ConfigError, match="inner: unknown key"):
        load_config(Outer, p)


def test_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["heads.a.dim=2", "limit=3"])
    assert from_dict(Outer, to_dict(cfg)) == cfg
    for suffix in (".json", ".yaml"):
        save_config(cfg, tmp_path / f"c{suffix}")
        assert load_config(Outer, tmp_path / f"c{suffix}") == cfg


def test_int_accepted_as_float_but_bool_is_not_int():
    assert load_config(Outer, None, ["inner.lr=1"]).inner.lr == 1.0
    with pytest.raises(ConfigError):
        load_config(Outer, None, ["inner.dim=true"])


def test_training_only_keys_of_old_tts_configs_are_moved_or_dropped(tmp_path):
    """Session 11 moved p_uncond, prompt_loss_weight, latent_noise_scale and input_noise from TTSConfig to
    TrainConfig: an old recipe or run config (keys under tts:) loads with them moved; an old release config
    loads with them dropped; the new home refuses bad values."""
    from tts.config import TTSConfig
    from tts.train_config import TrainConfig

    old = tmp_path / "old.yaml"
    old.write_text("tts:\n  p_uncond: 0.2\n  input_noise: 0.75\n  latent_noise_scale: 0.3\n  frame_rate: 25.0\n")
    cfg = load_config(TrainConfig, old)
    assert (cfg.p_uncond, cfg.input_noise, cfg.latent_noise_scale, cfg.prompt_loss_weight) == (0.2, 0.75, 0.3, 0.0)
    assert cfg.tts.frame_rate == 25.0
    release = to_dict(TTSConfig())
    release.update(p_uncond=0.1, prompt_loss_weight=0.0, latent_noise_scale=0.5, input_noise=0.75)
    assert from_dict(TTSConfig, release) == TTSConfig()
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(TrainConfig, None, ["tts.p_uncond=0.1"])  # an override names today's key
    assert load_config(TrainConfig, None, ["p_uncond=0.0"]).p_uncond == 0.0
    with pytest.raises(ValueError, match="p_uncond"):
        load_config(TrainConfig, None, ["p_uncond=1.0"])


def test_lm_timing_keys_of_old_releases_are_grouped_and_read_noise_is_retired():
    """Session 11 grouped the keys only LM-head timing reads under TTSConfig.lm_timing: an old release config
    (flat keys) loads with them moved; read_noise (measured without gain) is refused when it was set."""
    from tts.config import TTSConfig

    old = to_dict(TTSConfig())
    lm_timing = old.pop("lm_timing")
    old.update({**lm_timing, "advance_bias": 2.0, "max_phone_seconds": 0.2, "read_noise": 0.0})
    cfg = from_dict(TTSConfig, old)
    assert cfg.lm_timing.advance_bias == 2.0 and cfg.lm_timing.max_phone_seconds == 0.2
    with pytest.raises(ValueError, match="read_noise .* retired"):
        from_dict(TTSConfig, {**old, "read_noise": 0.5})
    with pytest.raises(ValueError, match="run limits"):
        from_dict(TTSConfig, {**old, "max_gap_seconds": 0.0})
