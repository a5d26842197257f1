"""One-step heads: distillation from a teacher head, the fused sampler at steps=1, release files, and the
decoding loop's head override (latentlm/one_step.py, latentlm/distill.py)."""

from __future__ import annotations

import pytest
import torch

from latentlm.distill import HeadRecorder, distill, one_step, teacher_targets
from latentlm.head import DiffusionHead, HeadConfig
from latentlm.one_step import OneStepConfig, load_one_step, save_one_step, student_from


def _teacher(seed: int = 0) -> DiffusionHead:
    """A small head with every layer random (AdaLN-Zero starts at zero: the sampler would return zeros)."""
    torch.manual_seed(seed)
    head = DiffusionHead(HeadConfig(latent_dim=4, cond_dim=8, width=32, depth=2))
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return head.eval()


def test_one_step_is_what_the_fused_sampler_returns_at_one_step():
    head = _teacher()
    g = torch.Generator().manual_seed(1)
    cond, x_T = torch.randn(6, 8, generator=g), torch.randn(6, 4, generator=g) * 0.7
    with torch.no_grad():
        ref = one_step(head, x_T, cond)
    torch.testing.assert_close(head.sample(cond, steps=1, noise=x_T), ref, rtol=1e-4, atol=1e-5)
    # temperature scales the given noise exactly as it scales a drawn one
    torch.testing.assert_close(head.sample(cond, steps=1, noise=x_T / 0.7, temperature=0.7), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="noise must have shape"):
        head.sample(cond, steps=1, noise=x_T[:2])


def test_given_noise_reproduces_the_generator_draw():
    head = _teacher()
    cond, uncond = torch.randn(3, 8), torch.randn(3, 8)
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    a = head.sample(cond, steps=5, cfg=2.0, uncond=uncond, temperature=0.8, generator=torch.Generator().manual_seed(5))
    b = head.sample(cond, steps=5, cfg=2.0, uncond=uncond, temperature=0.8, noise=z)
    torch.testing.assert_close(a, b)


def test_distillation_fits_the_guided_teacher_from_the_cond_row_alone():
    teacher = _teacher()
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(400, 8, generator=g)
    uncond = cond * 0.3 + torch.randn(400, 8, generator=g) * 0.5
    data = teacher_targets(teacher, cond, uncond, cfg_scale=2.0, steps=8, draws=4, generator=g)
    assert data.x_T.shape == (1600, 4) and data.states == 400
    # the targets are the teacher's guided samples from exactly these starting points
    torch.testing.assert_close(
        data.x0[:5], teacher.sample(cond[:5], steps=8, cfg=2.0, uncond=uncond[:5], noise=data.x_T[:5])
    )
    torch.set_num_threads(1)
    student, report = distill(teacher, data, train_steps=800, batch=256, lr=2e-3, generator=g)
    assert report.val_mse < 0.6 * report.start_mse, report
    assert report.val_mse < 0.5 * report.target_var, report
    # the student is a head whose ordinary one-step sampler gives its distilled sample
    with torch.no_grad():
        torch.testing.assert_close(
            student.sample(data.cond[:7], steps=1, noise=data.x_T[:7]), one_step(student, data.x_T[:7], data.cond[:7])
        )
    # the teacher was not touched
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), _teacher().state_dict().values()))


def test_student_starts_as_the_teacher():
    teacher = _teacher()
    student = student_from(teacher)
    assert student is not teacher
    for (k, a), b in zip(teacher.state_dict().items(), student.state_dict().values()):
        assert torch.equal(a, b), k


def test_recorder_records_states_and_samples_like_the_head():
    head = _teacher()
    rec = HeadRecorder(head)
    cond, uncond = torch.randn(2, 8), torch.randn(2, 8)
    out = rec.sample(cond, steps=4, cfg=1.5, uncond=uncond, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        out, head.sample(cond, steps=4, cfg=1.5, uncond=uncond, generator=torch.Generator().manual_seed(0))
    )
    rec.sample(cond[:1], steps=2)  # unguided: the cond is its own uncond
    c, u = rec.states()
    assert c.shape == (3, 8) and torch.equal(c[:2], cond) and torch.equal(u[:2], uncond) and torch.equal(u[2], cond[0])
    with pytest.raises(ValueError, match="saw no latent"):
        HeadRecorder(head).states()


def test_release_files_round_trip_and_refuse_a_mismatch(tmp_path):
    head = _teacher()
    cfg = OneStepConfig(head=head.cfg, cfg_scale=3.0, teacher_steps=10, max_temperature=1.0, default=True)
    save_one_step(tmp_path / "h", head, cfg, meta={"note": "x"})
    loaded, lcfg = load_one_step(tmp_path / "h")
    assert lcfg == cfg
    for a, b in zip(head.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="shape differs"):
        save_one_step(tmp_path / "bad", head, OneStepConfig(head=HeadConfig(latent_dim=4, cond_dim=8, width=16)))
    with pytest.raises(ValueError, match="cfg_scale"):
        OneStepConfig(cfg_scale=-1.0)
    with pytest.raises(ValueError, match="max_temperature"):
        OneStepConfig(max_temperature=0.0)
