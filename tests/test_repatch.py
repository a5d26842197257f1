"""A one-frame release made into a several-frames-per-item one (tts.repatch): an item of equal frames is read and
predicted as that one frame was, the rest of the model is the release's, the trainer starts from it with
tts.patch=2, it speaks from a real prompt, and what cannot be repatched is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latentlm.config import load_config
from tests.helpers import make_tiny_corpus, make_tiny_tts, train_tiny_release, write_tiny_recipe
from tts.layout import MODALITY
from tts.manifests import read_jsonl
from tts.model import TTS
from tts.repatch import main, repatch_lm
from tts.train import TrainConfig, Trainer


def test_an_item_of_equal_frames_is_read_and_predicted_as_that_frame():
    torch.manual_seed(0)
    lm = make_tiny_tts(seed=0, latent_dim=8).lm
    with torch.no_grad():  # a trained-looking head: AdaLN-Zero starts its gates at zero
        for p in lm.heads[MODALITY].parameters():
            p.add_(torch.randn_like(p) * 0.05)
    new = repatch_lm(lm, 2)
    assert new.cfg.modalities[MODALITY].latent_dim == 16 and lm.cfg.modalities[MODALITY].latent_dim == 8
    x, cond = torch.randn(5, 8), torch.randn(5, lm.cfg.trunk.dim)
    t = torch.tensor([0, 100, 300, 600, 900])
    with torch.no_grad():
        old_out = lm.heads[MODALITY](x, t, cond)
        new_out = new.heads[MODALITY](torch.cat([x, x], 1), t, cond)
        torch.testing.assert_close(new_out, torch.cat([old_out, old_out], 1))
        torch.testing.assert_close(new.latent_in[MODALITY](torch.cat([x, x], 1)), lm.latent_in[MODALITY](x))
    mean, std = (getattr(new, f"latent_{s}_{MODALITY}") for s in ("mean", "std"))
    assert torch.equal(mean, getattr(lm, f"latent_mean_{MODALITY}").repeat(2))
    assert torch.equal(std, getattr(lm, f"latent_std_{MODALITY}").repeat(2))
    same = [k for k, v in lm.state_dict().items() if v.shape == new.state_dict()[k].shape]
    assert all(torch.equal(lm.state_dict()[k], new.state_dict()[k]) for k in same if "latent_" not in k)
    assert (
        len(same) == len(lm.state_dict()) - 5
    )  # only latent_in, x_in, out and the two statistics changed shape
    with pytest.raises(ValueError, match="patch must be >= 2"):
        repatch_lm(lm, 1)


def test_a_repatched_release_trains_with_patch_2_and_speaks(real_speech_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    corpus = make_tiny_corpus(real_speech_dir, tmp_path / "corpus")
    recipe = write_tiny_recipe(tmp_path / "r.yaml", corpus, tmp_path / "run")
    release = train_tiny_release(recipe, corpus["manifest"], tmp_path / "release", steps=2)

    main([str(release), "--patch", "2", "--out", str(tmp_path / "p2")])
    said = capsys.readouterr().out
    assert "2 frames per item" in said and "tts.patch=2" in said
    made = TTS.from_pretrained(tmp_path / "p2")
    src = TTS.from_pretrained(release)
    assert made.cfg.patch == 2 and made.one_step is None and made.cfg.timing == src.cfg.timing
    assert torch.equal(made.lm.embed.weight, src.lm.embed.weight) and made.vae.hop == src.vae.hop
    dim = made.cfg.latent_dim
    # the trainer starts from it (its config check passes) and trains on the same latents read in pairs
    over = [f"init_from={tmp_path / 'p2'}", "tts.patch=2", f"tts.model.modalities.audio.latent_dim={dim}",
            f"out_dir={tmp_path / 'run2'}", "max_steps=1"]  # fmt: skip
    tr2 = Trainer(load_config(TrainConfig, recipe, over), resume=False)
    assert all(torch.equal(v, made.lm.state_dict()[k]) for k, v in tr2.lm.state_dict().items())
    tr2.setup_data(read_jsonl(corpus["manifest"]))
    log = tr2.train_step()
    assert torch.isfinite(torch.tensor(log["diff_audio"])) and log["diff_audio"] > 0
    # and speaks from a real prompt, two frames per item
    prompt = sorted(Path(real_speech_dir, "dev").glob("*.wav"))[0]
    out = made.synthesize("Hello there.", prompt, prompt_text="hello", seed=0, max_seconds=1.0)
    frames = out.info["frames"][0]
    assert frames > 0 and frames % 2 == 0 and len(out.audio) == frames * made.vae.hop

    for argv, says in [
        (
            [str(tmp_path / "p2"), "--patch", "2", "--out", str(tmp_path / "p4")],
            "already has 2 frames per item",
        ),
        ([str(release), "--patch", "1", "--out", str(tmp_path / "p1")], "patch must be >= 2"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and says in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # an existing release is not overwritten
        main([str(release), "--patch", "2", "--out", str(tmp_path / "p2")])
    assert e.value.code == 2 and "not empty" in capsys.readouterr().err
