"""Test helpers: tiny untrained TTS releases for fast tests of every front end (CLIs, batch, Gradio app, server).

    path = make_tiny_release(tmp_path / "tts")    # about a second; loads with TTS.from_pretrained(path)

The release is real in every respect but training: a tiny LatentLM, a tiny untrained AudioVAE (16 kHz, 25 Hz),
and the real front-end vocabulary. Its LM-head rows for ``<lat>`` and ``<eo_audio>`` are zeroed, so the greedy stop decision is a tie that
``<lat>`` wins: like an untrained model that never learned to stop, every output runs to the length cap
(which is what the cap tests need, deterministically).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from latentlm.head import HeadConfig
from latentlm.model import LatentLM, LatentLMConfig
from latentlm.sigma_vae import BottleneckConfig
from latentlm.transformer import TransformerConfig
from tts.duration_predictor import DurationConfig, DurationPredictor
from tts.frontend import Frontend
from tts.layout import MODALITY, training_batch
from tts.model import TTS, TTSConfig
from vocoder_vae.model import AudioVAE, VAEConfig


def tiny_vae_config(latent_dim: int = 8) -> VAEConfig:
    return VAEConfig(
        sample_rate=16000,
        strides=[2, 4, 8, 10],
        channels=4,
        max_channels=16,
        dilations=[1],
        decoder_channels=32,
        bottleneck=BottleneckConfig(kind="sigma", latent_dim=latent_dim, sigma_scale=0.5),
    )


def tiny_tts_config(vocab_size: int, latent_dim: int = 8, dim: int = 32, **overrides) -> TTSConfig:
    lm = LatentLMConfig(
        vocab_size=vocab_size,
        trunk=TransformerConfig(dim=dim, n_layers=2, n_heads=2, n_kv_heads=1, max_seq_len=4096),
        modalities={MODALITY: HeadConfig(latent_dim=latent_dim, cond_dim=dim, width=dim, depth=1)},
    )
    return TTSConfig(model=lm, frame_rate=25.0, **overrides)


def random_training_row(lm: LatentLM, P: int, T: int, drop: bool = False, latent_dim: int = 8):
    """One packed training row of random phonemes (P) and latents (4 prompt + T - 4 target frames); ``drop``:
    the phonemes dropped to ``<null>`` (classifier-free guidance)."""
    g = torch.Generator().manual_seed(0)
    collated = {
        "phonemes": torch.randint(2, 20, (1, P), generator=g),
        "phoneme_mask": torch.ones(1, P, dtype=torch.bool),
        "prompt_latents": torch.randn(1, 4, latent_dim, generator=g),
        "prompt_mask": torch.ones(1, 4, dtype=torch.bool),
        "target_latents": torch.randn(1, T - 4, latent_dim, generator=g),
        "target_mask": torch.ones(1, T - 4, dtype=torch.bool),
    }
    return training_batch(lm, collated, p_uncond=1.0 if drop else 0.0, latent_noise_scale=0.0)


def ragged_training_batch(
    lm: LatentLM, P: list[int], Tp: list[int], Tt: list[int], p_uncond: float, seed: int
):
    """A packed batch of random rows with P phonemes, Tp prompt and Tt target frames each (padded to the longest;
    condition dropout ``p_uncond``, drawn from ``seed``) -> (batch, per-row flag: phonemes kept)."""
    B, D = len(P), lm.latent_dims[MODALITY]
    g = torch.Generator().manual_seed(seed)

    def pad(n: list[int]) -> torch.Tensor:
        return torch.arange(max(n))[None] < torch.tensor(n)[:, None]

    collated = {
        "phonemes": torch.randint(2, 20, (B, max(P)), generator=g),
        "phoneme_mask": pad(P),
        "prompt_latents": torch.randn(B, max(Tp), D, generator=g),
        "prompt_mask": pad(Tp),
        "target_latents": torch.randn(B, max(Tt), D, generator=g),
        "target_mask": pad(Tt),
    }
    batch = training_batch(lm, collated, p_uncond=p_uncond, generator=g)
    return batch, [bool((batch.tokens[b] >= lm.layout.offset).any()) for b in range(B)]


def make_tiny_tts(seed: int = 0, latent_dim: int = 8, patch: int = 1, **overrides) -> TTS:
    """An in-memory untrained tiny TTS (deterministic in ``seed``); ``patch`` VAE frames per item."""
    torch.manual_seed(seed)
    fe = Frontend("en-us")
    cfg = tiny_tts_config(len(fe.vocab), latent_dim * patch, patch=patch, **overrides)
    vae = AudioVAE(tiny_vae_config(latent_dim)).eval()
    lm = LatentLM(cfg.model).eval()
    with torch.no_grad():
        lm.lm_head.weight[[lm.layout.lat, lm.layout.end[MODALITY]]] = 0.0
    duration = (
        DurationPredictor(DurationConfig(len(fe.vocab), channels=16, layers=1))
        if cfg.timing == "predictor"
        else None
    )
    return TTS(cfg, lm, vae, fe, duration)


def make_tiny_release(directory: str | Path, seed: int = 0, **overrides) -> Path:
    """Write an untrained tiny TTS release to ``directory`` and return its path."""
    return make_tiny_tts(seed, **overrides).save_pretrained(directory, meta={"untrained": True})


def make_tiny_corpus(
    real_speech_root: str | Path,
    directory: str | Path,
    n: int = 6,
    latent_dim: int = 8,
    max_seconds: float = 5.0,
) -> dict[str, Path]:
    """A training set for tests: the ``n`` shortest real dev clips of speakers with >= 2 of them (<= max_seconds),
    latents from a tiny untrained VAE. Returns {"manifest", "latents", "vae"} paths under ``directory``."""
    from tts.data import LatentStore, extract_latents
    from tts.manifests import real_speech, write_jsonl

    directory = Path(directory)
    rows = [
        r for r in real_speech(real_speech_root, subsets=("dev",)) if r.duration <= max_seconds and r.text
    ]
    by_spk: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: r.duration):
        by_spk.setdefault(r.speaker, []).append(r)
    pick = [r for utts in by_spk.values() if len(utts) >= 2 for r in utts[:2]]
    pick += [r for r in rows if r not in pick]
    pick = pick[:n]
    torch.manual_seed(0)
    vae = AudioVAE(tiny_vae_config(latent_dim)).eval()
    write_jsonl(pick, directory / "manifest.jsonl")
    extract_latents(pick, vae, directory / "latents", progress=False)
    store = LatentStore(directory / "latents")
    z = torch.cat([store.get(r.id) for r in pick])  # [sum T, D]
    vae.set_latent_stats(z.mean(0), z.std(0))  # as the VAE trainer does at export
    vae.save_pretrained(directory / "vae")
    return {
        "manifest": directory / "manifest.jsonl",
        "latents": directory / "latents",
        "vae": directory / "vae",
    }


def write_tiny_recipe(path: str | Path, corpus: dict[str, Path], out_dir: str | Path, dim: int = 32) -> Path:
    """A TrainConfig YAML for the tiny model on ``make_tiny_corpus`` data (vocab size of the real front end)."""
    import yaml

    from latentlm.config import to_dict

    fe = Frontend("en-us")
    cfg = tiny_tts_config(len(fe.vocab), latent_dim=8, dim=dim)
    doc = {
        "tts": to_dict(cfg),
        "vae": str(corpus["vae"]),
        "data": {
            "manifest": str(corpus["manifest"]),
            "latents": str(corpus["latents"]),
            "max_frames": 400,
            "max_prompt_frames": 40,
            "num_samples": 1,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "max_steps": 6,
        "save_every": 2,
        "log_every": 1,
        "sample_every": 0,
        "out_dir": str(out_dir),
        "progress": False,
        "threads": 1,
    }
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    return Path(path)


def train_tiny_release(recipe: str | Path, manifest: str | Path, out: str | Path, steps: int) -> Path:
    """Train the recipe's model ``steps`` steps in process (no checkpoint) and save its EMA release at ``out``."""
    from latentlm.config import load_config
    from tts.manifests import read_jsonl
    from tts.train import TrainConfig, Trainer

    tr = Trainer(load_config(TrainConfig, recipe, [f"max_steps={steps}"]), resume=False)
    tr.setup_data(read_jsonl(manifest))
    for _ in range(steps):
        tr.train_step()
    return tr.ema_tts().save_pretrained(out)


def subprocess_env() -> dict:
    """Environment for trainer subprocesses in tests: the repo importable, one OpenMP thread per process."""
    repo = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_tts_train(recipe: str | Path, *overrides: str, nproc: int = 1) -> subprocess.CompletedProcess:
    """``python -m tts.train RECIPE ...`` (nproc 1) or its ``torchrun --nproc_per_node=N`` form, captured."""
    launch = [sys.executable]
    if nproc > 1:
        launch += ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}"]
    cmd = [*launch, "-m", "tts.train", str(recipe), *overrides]
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(cmd, cwd=repo, env=subprocess_env(), capture_output=True, text=True, timeout=300)


class ServerProcess:
    """``python -m tts.server ARGS`` in a subprocess on a free port, for tests and benchmarks:

        with ServerProcess(["--checkpoint", release, "--voices", voices_dir]) as srv:
            httpx.get(srv.url + "/health")

    Waits (up to ``timeout`` s) until ``/health`` answers; stops the server on exit; ``srv.log()`` is its output."""

    def __init__(
        self, args: list[str], port: int | None = None, timeout: float = 120.0, env: dict | None = None
    ):
        self.args, self.port, self.timeout, self.env = list(args), port or free_port(), timeout, env
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> ServerProcess:
        import tempfile
        import time
        import urllib.request

        repo = Path(__file__).resolve().parents[1]
        self._log = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", "tts.server", "--port", str(self.port), *self.args]
        env = {k: v for k, v in subprocess_env().items() if k != "LATENTLM_API_KEY"}  # only a key we give
        env.update(self.env or {})
        self.proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the server did not answer within {self.timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
