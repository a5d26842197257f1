"""A TTS release with a one-step head (latentlm/one_step.py): chosen per call or by the release, decoded on one
trunk row with the distilled head, refused for settings it was not distilled for, kept by save/load, and the
same through synthesize, stream and synthesize_batch. Tiny untrained models, real prompt audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentlm.one_step import DIRNAME, OneStepConfig, student_from
from tests.helpers import make_tiny_tts
from tts.layout import MODALITY
from tts.model import TTS, TTSInputError
from tts.options import SynthesisOptions


def _with_one_step(default: bool = False, **overrides) -> TTS:
    tts = make_tiny_tts(seed=0, cfg_scale=2.0, **overrides)
    head = student_from(tts.lm.heads[MODALITY])
    torch.manual_seed(1)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # a student that differs from the teacher
    cfg = OneStepConfig(head=head.cfg, modality=MODALITY, cfg_scale=2.0, max_temperature=1.0, default=default)
    return TTS(tts.cfg, tts.lm, tts.vae, tts.frontend, tts.duration, tts.aligner, (head, cfg))


@pytest.fixture(scope="module")
def prompt(real_speech_dir):
    return real_speech_dir / "dev" / "coqui__LJ001-0001.wav", "Printing, in the only sense with which we are"


def _calls(tts: TTS) -> list[dict]:
    """Every decoding call's keyword arguments from now on."""
    seen, real = [], tts.lm.generate_stream

    def spy(prefix, **kwargs):
        seen.append({**kwargs, "rows": prefix.tokens.shape[0]})
        return real(prefix, **kwargs)

    tts.lm.generate_stream = spy
    return seen


def test_one_step_decodes_one_row_with_the_distilled_head(prompt):
    tts = _with_one_step()
    calls = _calls(tts)
    kw = dict(prompt_text=prompt[1], max_seconds=0.6, seed=2)
    fast = tts.synthesize("Hello there.", prompt[0], head="one_step", **kw)
    ref = tts.synthesize("Hello there.", prompt[0], **kw)  # the release's default: the reference head
    fast_call, ref_call = calls
    assert fast_call["cfg"] == 1.0 and fast_call["uncond"] is None and fast_call["steps"] == 1
    assert fast_call["heads"][MODALITY] is tts.one_step[0]
    assert ref_call["cfg"] == 2.0 and ref_call["uncond"] is not None and ref_call["heads"] is None
    assert fast.audio.shape == ref.audio.shape and not np.allclose(fast.audio, ref.audio)
    # the same audio through stream and synthesize_batch
    streamed = np.concatenate(list(tts.stream("Hello there.", prompt[0], head="one_step", **kw)))
    np.testing.assert_allclose(streamed, fast.audio, atol=1e-4)
    [batched] = tts.synthesize_batch([dict(text="Hello there.", prompt_audio=prompt[0], head="one_step", **kw)])
    np.testing.assert_allclose(batched.audio, fast.audio, atol=1e-4)


def test_the_release_can_make_it_the_default_and_it_survives_save_and_load(prompt, tmp_path):
    tts = _with_one_step(default=True)
    out = tts.save_pretrained(tmp_path / "rel")
    assert (out / DIRNAME / "model.safetensors").is_file()
    back = TTS.from_pretrained(out)
    assert back.one_step[1] == tts.one_step[1]
    for a, b in zip(tts.one_step[0].state_dict().values(), back.one_step[0].state_dict().values()):
        assert torch.equal(a, b)
    calls = _calls(back)
    kw = dict(prompt_text=prompt[1], max_seconds=0.4, seed=0)
    back.synthesize("Hi.", prompt[0], **kw)
    back.synthesize("Hi.", prompt[0], head="reference", **kw)
    assert [c["steps"] for c in calls] == [1, 10] and calls[0]["heads"] is not None and calls[1]["heads"] is None


def test_settings_it_was_not_distilled_for_are_refused_before_any_work(prompt):
    tts = _with_one_step(default=True)
    calls = _calls(tts)
    kw = dict(prompt_text=prompt[1], max_seconds=0.4)
    with pytest.raises(TTSInputError, match="cfg 3: the one-step head was distilled at cfg 2"):
        tts.synthesize("Hi.", prompt[0], cfg=3.0, **kw)
    with pytest.raises(TTSInputError, match="temperature 1.5: .* up to 1"):
        tts.synthesize("Hi.", prompt[0], temperature=1.5, **kw)
    tts.synthesize("Hi.", prompt[0], cfg=2.0, temperature=0.5, **kw)  # its own guidance, a lower temperature
    tts.synthesize("Hi.", prompt[0], cfg=3.0, temperature=1.5, head="reference", **kw)
    assert [c["steps"] for c in calls] == [1, 10]
    plain = make_tiny_tts(seed=0)
    with pytest.raises(TTSInputError, match="no one-step head"):
        plain.synthesize("Hi.", prompt[0], head="one_step", **kw)
    [err] = plain.synthesize_batch([dict(text="Hi.", prompt_audio=prompt[0], head="one_step")], on_error="return")
    assert isinstance(err, TTSInputError)
    with pytest.raises(TTSInputError, match="head must be one of"):
        SynthesisOptions(head="two_step")


def test_a_one_step_head_of_another_shape_is_refused():
    tts = make_tiny_tts(seed=0)
    other = make_tiny_tts(seed=0, latent_dim=4).lm.heads[MODALITY]
    with pytest.raises(TTSInputError, match="does not match"):
        TTS(tts.cfg, tts.lm, tts.vae, tts.frontend, tts.duration, None, (other, OneStepConfig(head=other.cfg)))


def test_distill_cli_refuses_bad_input_before_work_and_resumes_from_recorded_states(tmp_path, capsys):
    """python -m tts.distill_head: bad arguments, a missing manifest or release exit 2 with one line; a rerun
    after an interruption reuses OUT/.distill/states.safetensors (the slow recording) and writes the head."""
    from safetensors.torch import save_file

    from latentlm.one_step import load_one_step
    from tests.helpers import make_tiny_release
    from tts.distill_head import main, states_key

    release = make_tiny_release(tmp_path / "rel", cfg_scale=2.0)
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("")
    base = [str(release), "--manifest", str(manifest), "--out", str(tmp_path / "out")]
    for argv, says in [
        (base + ["--draws", "0"], "--draws must be >= 1"),
        (base + ["--max-temperature", "0"], "--max-temperature must be positive"),
        (base + ["--record-temperature", "-1"], "--record-temperature must be >= 0"),
        ([str(release), "--manifest", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")], "no manifest"),
        ([str(release), "--manifest", str(manifest), "--out", str(release)], "--out must differ"),
        ([str(tmp_path / "nothing"), "--manifest", str(manifest), "--out", str(tmp_path / "o")], "cannot load"),
    ]:
        assert main(argv) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written
    assert main(base) == 2 and "no cross-sentence jobs" in capsys.readouterr().err  # an empty manifest
    # the recorded states of an interrupted run: the rerun distils from them without decoding anything
    C = TTS.from_pretrained(release).lm.cfg.trunk.dim
    (tmp_path / "out" / ".distill").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    states = {"cond": torch.randn(40, C, generator=g), "uncond": torch.randn(40, C, generator=g)}
    cache = str(tmp_path / "out" / ".distill" / "states.safetensors")
    key = states_key(release, [str(manifest)], 400, 3, 4, 0)  # the CLI's defaults
    # states another teacher recorded (here: another config) are never reused: recorded again (no jobs here)
    (release / "config.json").write_text((release / "config.json").read_text() + " ")
    assert states_key(release, [str(manifest)], 400, 3, 4, 0) != key
    save_file(states, cache, metadata=key)
    assert main(base) == 2
    io = capsys.readouterr()
    assert "from another teacher or job set: recording again" in io.out and "no cross-sentence jobs" in io.err
    key = states_key(release, [str(manifest)], 400, 3, 4, 0)
    assert states_key(release, [str(manifest)], 401, 3, 4, 0) != key  # and another job set
    assert states_key(release, [str(manifest)], 400, 3, 4, 0, 0.7) != key  # or another recording temperature
    save_file(states, cache, metadata=key)
    torch.set_num_threads(1)
    assert main(base + ["--train-steps", "3", "--draws", "2", "--default"]) == 0
    assert "states: 40 from" in capsys.readouterr().out
    head, cfg = load_one_step(tmp_path / "out" / DIRNAME)
    assert cfg.default and cfg.cfg_scale == 2.0 and cfg.teacher_steps == 10
    assert TTS.from_pretrained(tmp_path / "out").one_step is not None


def test_states_are_recorded_at_the_temperature_asked_for(prompt):
    """tts.distill_head --record-temperature: the teacher decodes the jobs at that temperature while its states are
    recorded (at 0 the noise is gone, so two seeds record the same states; at the release's 1.0 they differ)."""
    from tts.distill_head import record_states

    torch.set_num_threads(1)
    tts = make_tiny_tts(seed=0, cfg_scale=2.0)
    assert tts.cfg.temperature == 1.0
    job = [{"text": "A short test.", "prompt_audio": str(prompt[0]), "prompt_text": prompt[1]}]
    cold = [record_states(tts, job, 1, seed, temperature=0.0) for seed in (0, 5)]
    warm = [record_states(tts, job, 1, seed) for seed in (0, 5)]
    assert cold[0][0].shape[0] > 1 and cold[0][0].shape == cold[1][0].shape
    assert torch.equal(cold[0][0], cold[1][0]) and torch.equal(cold[0][1], cold[1][1])
    assert not torch.equal(warm[0][0], warm[1][0])


def test_on_policy_states_follow_the_students_own_decoding(prompt):
    """tts.distill_head --on-policy: the jobs are decoded with guidance (two rows, so the teacher's unconditional
    states are there) while every latent is the one-step head's sample: the states recorded are those of the
    student's trajectory, unlike the teacher's (same jobs, same seed), and as many (the plan fixes the frames)."""
    from tts.distill_head import record_states

    torch.set_num_threads(1)
    tts = _with_one_step()
    job = [{"text": "A short test.", "prompt_audio": str(prompt[0]), "prompt_text": prompt[1]}]
    teacher = record_states(tts, job, 1, 0)
    student = record_states(tts, job, 1, 0, on_policy=True)
    assert student[0].shape == teacher[0].shape and student[0].shape[0] > 1
    assert torch.equal(student[0][0], teacher[0][0])  # the first frame: the same prefix, nothing sampled yet
    assert not torch.equal(student[0][1:], teacher[0][1:])  # then the student's own latents steer the trunk
    assert not torch.equal(student[0], student[1])  # the guidance row's states are recorded too
    assert tts.lm.heads[MODALITY].__class__.__name__ == "DiffusionHead"  # the teacher is back in place


def test_distill_cli_on_policy_needs_a_one_step_head_and_keys_its_states(tmp_path, capsys):
    from tests.helpers import make_tiny_release
    from tts.distill_head import main, states_key

    release = make_tiny_release(tmp_path / "rel", cfg_scale=2.0)
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("")
    assert main([str(release), "--manifest", str(manifest), "--out", str(tmp_path / "o"), "--on-policy"]) == 2
    assert "has no one-step head" in capsys.readouterr().err
    _with_one_step().save_pretrained(tmp_path / "with")
    key = states_key(tmp_path / "with", [str(manifest)], 400, 3, 4, 0)
    assert states_key(tmp_path / "with", [str(manifest)], 400, 3, 4, 0, on_policy=True) != key
