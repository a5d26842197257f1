"""TTS: zero-shot voice cloning on the shared LatentLM. The one public API every front end calls.

Dimension legend: B rows, T latent frames, D latent dim, L samples.

    tts = TTS.from_pretrained("checkpoints/tts_demo")
    res = tts.synthesize("Hello there.", "prompt.wav", prompt_text=None, steps=10, seed=0)  # cfg: the release's
    res.audio  # float32 [L] at res.sample_rate: only the new speech, never the prompt
    for chunk in tts.stream("Hello there.", "prompt.wav"):  # float32 chunks while frames are generated
        ...
    results = tts.synthesize_batch([{"text": ..., "prompt_audio": ..., "prompt_text": ..., "seed": 0}, ...])

A release directory holds ``model.safetensors`` + ``config.json`` (kind "tts": the TTSConfig, and in ``meta`` the
front end's vocabulary and espeak-ng version) and the audio VAE release in ``vae/``. Loading is strict.

Input rules (``TTSInputError``, a ValueError; docs/BAD_INPUT.md), all checked by tts/prepare.py before any work:
the settings are one ``SynthesisOptions`` (tts/options.py); text must phonemize to something; the prompt
(tts/prompt.py) must be readable, at a sane rate, not silent, between ``min_prompt_seconds`` (1 s) and
``max_prompt_seconds`` (30 s; longer prompts are rejected, not trimmed, because a trimmed prompt would no longer
match a given prompt_text). Bare arrays / tensors are taken to be at the model's sample rate; pass
``(sample_rate, array)`` otherwise. Stereo is averaged. A sentence that would overflow the trunk's positions
beside the prompt is split at a word boundary before anything is encoded (tts/positions.py).

Layout: the release's config is tts/config.py; every sentence becomes one ``Row`` (tts/rows.py), built once and
read by all three calls; continuation mode is tts/continuation.py; the decoding loop is ``TTS._frames`` here.
Length cap per sentence: ``ceil(phonemes * max_frames_per_phoneme) + min_cap_seconds * frame_rate`` frames,
at most ``max_output_seconds`` (and ``max_seconds`` of the call). The end of speech is the LM head's
``<eo_audio>`` (greedy by default: ``lm_timing.token_temperature`` 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from latentlm.bridge import DIRNAME as BRIDGE_SUBDIR
from latentlm.bridge import StepBridge, load_bridge, save_bridge
from latentlm.checkpoint import load_release, load_state_dict_strict, save_release
from latentlm.config import from_dict
from latentlm.head import DiffusionHead
from latentlm.linear import quantize_int8
from latentlm.model import LatentLM
from latentlm.one_step import DIRNAME as ONE_STEP_SUBDIR
from latentlm.one_step import OneStepConfig, load_one_step, save_one_step
from tts.config import TTSConfig
from tts.duration_predictor import DurationPredictor, load_aligner, load_predictor
from tts.frontend import Frontend
from tts.layout import MODALITY, generation_prefix, interleaved_script
from tts.options import BACKENDS, Decoding, SynthesisOptions, TTSInputError, resolve_decoding
from tts.patch import to_frames, to_items
from tts.prepare import prepare_job
from tts.prompt import PromptLimits, PromptTranscriber, load_prompt
from tts.rows import Row, SynthesisJob
from tts.script_constraint import ScriptConstraint, run_limits
from vocoder_vae.model import AudioVAE

__all__ = ["TTS", "TTSConfig", "SynthesisResult", "TTSInputError"]

RELEASE_KIND = "tts"
VAE_SUBDIR = "vae"
DURATION_SUBDIR = "duration"  # the duration predictor's release (tts/duration_predictor.py), if any


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 [L]
    sample_rate: int
    prompt_text: str
    info: dict = field(default_factory=dict)  # frames, stop reasons, timings

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def speech_seconds(self) -> float:
        """Seconds of audio less the silence ``TTSConfig.edge_seconds`` put around it (what an RTF divides by)."""
        return self.duration - self.info.get("edges_s", 0.0)


class TTS:
    SENTENCE_ROWS = 8  # sentences of one text decoded together by ``synthesize`` (weights read once per step;
    # one at a time on the ONNX Runtime one-step path: ``_rows_per_pass``)

    def __init__(
        self,
        cfg: TTSConfig,
        lm: LatentLM,
        vae: AudioVAE,
        frontend: Frontend,
        duration: DurationPredictor | None = None,
        aligner=None,
        one_step: tuple[DiffusionHead, OneStepConfig] | None = None,
        bridge: StepBridge | None = None,
    ):
        if len(frontend.vocab) != cfg.model.vocab_size:
            raise TTSInputError(
                f"front end vocabulary has {len(frontend.vocab)} symbols, the model expects {cfg.model.vocab_size}"
            )
        if vae.latent_dim != cfg.frame_dim:
            raise TTSInputError(
                f"VAE latent dim {vae.latent_dim} != model latent dim {cfg.latent_dim} / patch {cfg.patch}"
            )
        if abs(vae.frame_rate - cfg.frame_rate) > 1e-6:
            raise TTSInputError(
                f"VAE frame rate {vae.frame_rate:g} Hz != model frame rate {cfg.frame_rate:g} Hz"
            )
        if cfg.timing == "predictor" and duration is None:
            raise TTSInputError(
                'timing "predictor" needs a duration predictor (the release\'s duration/ folder)'
            )
        if duration is not None and duration.cfg.vocab_size != cfg.model.vocab_size:
            raise TTSInputError(
                f"duration predictor vocabulary {duration.cfg.vocab_size} != the model's {cfg.model.vocab_size}"
            )
        self.cfg, self.lm, self.vae, self.frontend = cfg, lm.eval(), vae.eval(), frontend
        self.duration = duration.eval() if duration is not None else None
        self.aligner = aligner  # tts.phone_hmm.PhoneAligner beside the predictor: continuation prompts, takes
        if one_step is not None:
            head, oc = one_step
            if oc.modality != MODALITY or head.cfg != self.lm.heads[MODALITY].cfg:
                raise TTSInputError("the one-step head does not match the model's audio head")
            one_step = (head.to(self.device).eval(), oc)
        self.one_step = one_step  # distilled (head, config) beside the reference head, or None
        if bridge is not None:
            bc = bridge.cfg
            if one_step is None or bc.modality != MODALITY or bc.dim != self.lm.cfg.trunk.dim or (
                bc.latent_dim != self.lm.latent_dims[MODALITY] or bc.vocab != self.lm.layout.size
            ):
                raise TTSInputError("the step bridge does not match the model (or the release has no one-step head)")
            bridge = bridge.to(self.device).eval()
        self.bridge = bridge  # latentlm/bridge.py: every second planned latent without a trunk call, or None
        self._transcribe = PromptTranscriber()  # loaded on first use

    # ------------------------------------------------------------------ releases
    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str | torch.device = "cpu",
        quantize: str | None = None,
        backend: str = "torch",
    ) -> TTS:
        """Load a release. ``quantize="int8"`` (CPU only): the trunk's linear layers become dynamic int8
        (latentlm/linear.py ``quantize_int8``): much faster for large trunks, ~7% for the demo size.
        ``backend="onnx"`` (CPU only): one-row decode steps of the trunk and the one-step head run in ONNX Runtime
        (latentlm/onnx_step.py; graphs built in memory at load, ~3 s with int8); everything else stays in PyTorch. With
        ``quantize="int8"`` those graphs are quantised by ONNX Runtime instead of the PyTorch trunk."""
        if quantize not in (None, "int8"):
            raise TTSInputError(f'quantize must be None or "int8", got {quantize!r}')
        if backend not in BACKENDS:
            raise TTSInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if (quantize or backend == "onnx") and torch.device(device).type != "cpu":
            raise TTSInputError(f"{'quantize=int8' if quantize else 'backend=onnx'} runs on the CPU only")
        directory = Path(directory)
        try:
            sd, cfg_dict, meta = load_release(directory, kind=RELEASE_KIND)
            cfg = from_dict(TTSConfig, cfg_dict)
            if "frontend" not in meta:
                raise ValueError(f"{directory}/config.json has no front end (meta.frontend)")
            frontend = Frontend.from_dict(meta["frontend"])
            if not (directory / VAE_SUBDIR).is_dir():
                raise FileNotFoundError(f"{directory} has no {VAE_SUBDIR}/ folder with the audio VAE release")
            vae = AudioVAE.from_pretrained(directory / VAE_SUBDIR, device=device)
            lm = LatentLM(cfg.model)
            load_state_dict_strict(lm, sd, source=str(directory))
            dur_dir = directory / DURATION_SUBDIR
            duration = load_predictor(dur_dir, device=device) if dur_dir.is_dir() else None
            aligner = load_aligner(dur_dir) if dur_dir.is_dir() else None
            fast_dir = directory / ONE_STEP_SUBDIR
            one_step = load_one_step(fast_dir, map_location=device) if fast_dir.is_dir() else None
            bridge_dir = directory / BRIDGE_SUBDIR
            bridge = load_bridge(bridge_dir, map_location=device) if bridge_dir.is_dir() else None
        except TTSInputError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TTSInputError(f"cannot load TTS release {directory}: {e}") from e
        if quantize == "int8" and backend == "torch":
            quantize_int8(lm.trunk)
        tts = cls(cfg, lm.to(device), vae, frontend, duration, aligner, one_step, bridge)
        if backend == "onnx":
            tts.use_onnx(int8=quantize == "int8")
        return tts

    def use_onnx(self, threads: int = 1, int8: bool = False) -> None:
        """Run one-row decode steps of the trunk and of the one-step head in ONNX Runtime (CPU; ``threads``: its
        intra-op threads, 1 measured fastest for the demo size whatever torch's; ``int8``: their weights quantised
        by ONNX Runtime). Same outputs to float rounding (float32); batches of several rows and the reference head
        stay eager."""
        from latentlm.onnx_step import OnnxBridgeRuntime, OnnxHeadRuntime, OnnxTrunkRuntime

        if self.device.type != "cpu":
            raise TTSInputError("backend=onnx runs on the CPU only")
        self.lm.trunk.runtime = OnnxTrunkRuntime(self.lm.trunk, threads, int8)
        if self.one_step is not None:
            self.one_step[0].runtime = OnnxHeadRuntime(self.one_step[0], threads, int8)
        if self.bridge is not None:
            self.bridge.runtime = OnnxBridgeRuntime(self.bridge, threads, int8)

    def save_pretrained(self, directory: str | Path, meta: dict | None = None) -> Path:
        directory = Path(directory)
        full = {**(meta or {}), "frontend": self.frontend.to_dict(), "vae": VAE_SUBDIR}
        save_release(directory, self.lm, self.cfg, meta=full, kind=RELEASE_KIND)
        self.vae.save_pretrained(directory / VAE_SUBDIR)
        if self.duration is not None:
            from tts.duration_predictor import save_predictor

            save_predictor(self.duration, directory / DURATION_SUBDIR, aligner=self.aligner)
        if self.one_step is not None:
            save_one_step(directory / ONE_STEP_SUBDIR, *self.one_step)
        if self.bridge is not None:
            save_bridge(directory / BRIDGE_SUBDIR, self.bridge)
        return directory

    @property
    def sample_rate(self) -> int:
        return self.vae.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    # ------------------------------------------------------------------ inputs
    def load_prompt(self, prompt_audio) -> Tensor:
        """path | np.ndarray | torch.Tensor | (sample_rate, array) -> float32 [L] at the model rate, validated
        (tts/prompt.py: rate and length are checked before anything is read or resampled)."""
        return load_prompt(prompt_audio, self.prompt_limits, self.sample_rate)

    @property
    def prompt_limits(self) -> PromptLimits:
        c = self.cfg
        return PromptLimits(c.min_prompt_seconds, c.max_prompt_seconds, c.silence_rms, self.sample_rate)

    def transcribe(self, wav: Tensor) -> str:
        """Offline Whisper-base transcript of a prompt [L] at the model rate (loaded once, on first use)."""
        return self._transcribe(wav, self.sample_rate)

    @torch.no_grad()
    def encode_prompt(self, wav: Tensor, means: Tensor | None = None) -> Tensor:
        """Prompt waveform at the model rate (or its VAE means [T, D], when already encoded) -> normalised
        items [T // patch, patch * D]."""
        z = self.vae.encode(wav, self.sample_rate) if means is None else means  # [T, D] means
        return self.lm.normalize(MODALITY, to_items(z.to(self.device), self.cfg.patch))

    # ------------------------------------------------------------------ decoding
    def _generator(self, seed: int, sentence: int, take: int = 0) -> torch.Generator:
        """The random stream of one sentence of a job: seeded from (seed, sentence index), so a sentence draws
        the same noise whether it is synthesized alone, streamed, or decoded in a batch with others. Take k > 0
        of a sentence (``takes``) has a stream of its own; take 0 is the sentence's usual one. (The CPU generator
        keeps only a seed's low 32 bits, so takes are spread there by Knuth's multiplicative constant.)"""
        return torch.Generator(self.device).manual_seed(int(seed) * 65537 + sentence + take * 2654435761)

    def _check_takes(self, o: SynthesisOptions) -> None:
        if o.takes > 1 and self.aligner is None:
            raise TTSInputError(
                f"takes {o.takes}: this release has no phoneme aligner ({DURATION_SUBDIR}/aligner.json) to judge takes"
            )

    def _best_take(self, takes: list[list[Tensor]], row: Row) -> tuple[int, list[float]]:
        """A sentence's takes (generated items each) -> (index of the take the release's HMM aligner
        (tts/phone_hmm.py) finds most likely to say the row's script, every take's score: the log-likelihood per
        frame of its best alignment to the script, higher is better; -inf for an empty take). Ties: the first.
        Each take is judged as heard: its audio encoded again by the VAE (the latents the aligner was fitted on),
        which judged better than its generated latents (docs/experiments/real-voices.md, session 18)."""
        scores = [self.aligner.loglik(self._heard(t), row.script) if t else float("-inf") for t in takes]
        return max(range(len(takes)), key=lambda k: (scores[k], -k)), scores

    def _heard(self, items: list[Tensor]) -> Tensor:
        """Generated items -> the VAE's latents [T, D] of their decoded audio."""
        return self.vae.encode(self.vae.decode(self._vae_frames(items)), self.sample_rate)

    def _run_limits(self, script: list[int]) -> list[int]:
        """LM-head timing: items each symbol of ``script`` may take (tts/script_constraint.py ``run_limits``)."""
        symbols = [self.frontend.vocab.symbols[i] for i in script]
        return run_limits(symbols, self.cfg.lm_timing, self.cfg.frame_rate / self.cfg.patch)

    def _decoding(self, o: SynthesisOptions) -> Decoding:
        """What a call decodes with (tts/options.py): None resolved to the release's defaults."""
        return resolve_decoding(
            o, self.cfg.cfg_scale, self.cfg.temperature, self.one_step and self.one_step[1], self.bridge is not None
        )

    def _frames(
        self, rows: list[Row], prompts: list[Tensor], decoding: Decoding, generator
    ) -> Iterator[tuple]:
        """Decode rows (tts/rows.py) together, each after its prompt [Tp, D]; yields (row index, latent [D]
        normalised | None, stop reason | None) as they come. ``decoding``: head, steps, cfg, temperature; the
        one-step head decodes one trunk row per sentence (its guidance is distilled in). The
        rows' scripts are read by the interleaved layout only; their durations, when every row has them, are
        forced exactly (else the LM head decides, within ``_run_limits``)."""
        steps, cfg, temperature = decoding.steps, decoding.cfg, decoding.temperature
        heads = None
        if decoding.head == "one_step":
            heads, cfg = {MODALITY: self.one_step[0]}, 1.0
        caps = [r.cap for r in rows]
        scripts = [r.script for r in rows] if self.cfg.interleave else None
        prefix, uncond = generation_prefix(
            self.lm, [r.phonemes for r in rows], prompts, cfg, scripts, self.cfg.guidance == "text+voice"
        )
        rest = interleaved_script(self.lm, scripts) if scripts is not None else None
        end = self.lm.layout.end[MODALITY]
        count = [0] * len(caps)
        done = [False] * len(caps)
        # per row: the prompt's frames (they open the span and count towards it) + the row's floor
        floor = [len(p) + r.floor for p, r in zip(prompts, rows)]
        durations = None
        if all(r.durations is not None for r in rows):
            if scripts is None:
                raise ValueError("durations need the interleaved layout")
            floor = [len(p) for p in prompts]
            durations = [[int(x) for x in r.durations] for r in rows]
        constraint = None
        if scripts is not None:
            constraint = ScriptConstraint(
                rest,
                vocab=self.lm.layout.size,
                uncond_token=self.lm.layout.null,
                max_run=durations or [self._run_limits(sc) for sc in scripts],
                min_run=durations,
                bias=self.cfg.lm_timing.advance_bias,
                device=self.device,
            )
        it = self.lm.generate_stream(
            prefix,
            max_new=max(caps) + (max(len(x) for x in rest) if rest is not None else 0),
            min_latents=floor,
            constraint=constraint,
            steps=steps,
            cfg=cfg,
            uncond=uncond,
            temperature=temperature,
            token_temperature=self.cfg.lm_timing.token_temperature,
            generator=generator,
            heads=heads,
            bridge=self.bridge if decoding.bridge else None,
        )
        for st in it:
            for r in range(len(caps)):
                if done[r]:
                    continue
                if st.modality[r] >= 0:
                    count[r] += 1
                    yield r, st.latents[r, : self.cfg.latent_dim].clone(), None
                    if count[r] >= caps[r]:
                        done[r] = True
                        yield r, None, "cap"
                elif int(st.tokens[r]) == end:
                    done[r] = True
                    yield r, None, "eos"
                if not done[r] and bool(st.finished[r]):
                    done[r] = True
                    yield r, None, "cap" if bool(st.truncated[r]) else "stop_token"
            if all(done):
                it.close()
                return

    def _vae_frames(self, items: list[Tensor]) -> Tensor:
        """Generated items (normalised [patch * D] each) -> the VAE's latent frames [T * patch, D]."""
        return to_frames(self.lm.denormalize(MODALITY, torch.stack(items)), self.cfg.patch)

    def _decode_audio(self, items: list[Tensor]) -> np.ndarray:
        if not items:
            return np.zeros(0, dtype=np.float32)
        return self.vae.decode(self._vae_frames(items)).cpu().numpy().astype(np.float32)

    def _silence(self, seconds: float) -> np.ndarray:
        """Silence between sentences (``cfg.pause_seconds``) or around the speech (``cfg.edge_seconds``)."""
        return np.zeros(int(seconds * self.sample_rate), dtype=np.float32)

    def _result(
        self, job: SynthesisJob, pieces: list[np.ndarray], items: list[int], stops, t_gen, t_vae, t0,
        chosen: list[tuple[int, list[float] | None]] | None = None,
    ) -> SynthesisResult:
        """items: generated items per sentence (reported as VAE frames); chosen: ``_choose``'s (take kept, the
        takes' scores) per sentence, reported when there were several takes."""
        edge = self._silence(self.cfg.edge_seconds)
        lead = edge if job.continuation_audio is None else np.asarray(job.continuation_audio, dtype=np.float32)
        out = [lead]
        for i, p in enumerate(pieces):
            if i:
                out.append(self._silence(self.cfg.pause_seconds))
            out.append(p)
        out.append(edge)
        audio = np.concatenate(out)
        edges = (len(edge) * (2 if job.continuation_audio is None else 1)) / self.sample_rate
        total = time.perf_counter() - t0
        info = {
            "frames": [n * self.cfg.patch for n in items],  # VAE frames
            "stop": stops,
            "sentences": job.sentences,
            "prompt_frames": int(job.prompt.shape[0]) * self.cfg.patch,  # VAE frames
            "timings": {**job.timings, "generate_s": t_gen, "vae_decode_s": t_vae, "total_s": total},
            "edges_s": edges,  # TTSConfig.edge_seconds of silence before and after the speech
            "rtf": total / max(len(audio) / self.sample_rate - edges, 1e-9),
        }
        if chosen and any(scores is not None for _, scores in chosen):
            info["takes"] = [{"kept": take, "scores": scores} for take, scores in chosen]
        return SynthesisResult(audio, self.sample_rate, job.prompt_text, info)

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def synthesize(
        self,
        text: str,
        prompt_audio,
        prompt_text: str | None = None,
        steps: int = 10,
        cfg: float | None = None,
        temperature: float | None = None,
        seed: int = 0,
        max_seconds: float | None = None,
        continuation: bool = False,
        speed: float = 1.0,
        head: str | None = None,
        takes: int = 1,
        bridge: bool = True,
        options: SynthesisOptions | None = None,
    ) -> SynthesisResult:
        """Speech for ``text`` in the voice of ``prompt_audio``. Long text is split into sentences that are
        generated with the same prompt, ``SENTENCE_ROWS`` at a time as the rows of one batch (each with its own
        seeded random stream, so the audio is what one-by-one decoding or ``stream`` gives, to float rounding),
        joined by short pauses. ``continuation=True``: ``prompt_audio`` is the start of an utterance whose whole
        text is ``text`` (no prompt_text); the model continues it and the result is prompt + continuation.
        ``speed`` (0.5-2, releases timed by a duration predictor): every predicted duration is divided by it.
        ``head``: "reference" (``steps`` DPM-Solver++ evaluations, guidance on a second row) or "one_step" (a
        release's distilled head: one evaluation, one row); None is the release's default.
        ``bridge``: with the one-step head, the release's step bridge (``step_bridge/``, latentlm/bridge.py) where
        it has one: every second frame of a planned sentence without a trunk call; False decodes every frame
        from the trunk.
        ``takes`` > 1 (releases with a phoneme aligner, ``duration/aligner.json``): every sentence is decoded that
        many times as rows of one batch, each take with its own seeded stream (take 0 is the one ``takes=1``
        decodes), and the take the aligner finds most likely to say the sentence is kept (``info["takes"]``: the
        kept take and every take's score per sentence).
        ``options``: the settings as one ``SynthesisOptions`` (instead of the keywords); either way they are
        checked before any work."""
        t0 = time.perf_counter()
        kw = dict(
            steps=steps, cfg=cfg, temperature=temperature, seed=seed, max_seconds=max_seconds, speed=speed,
            head=head, takes=takes, bridge=bridge,
        )
        o = SynthesisOptions.merge(options, **kw)  # checked before any work
        decoding = self._decoding(o)
        self._check_takes(o)
        job = prepare_job(self, text, prompt_audio, prompt_text, o.max_seconds, continuation, o.speed)
        todo = [(k, take) for k in range(len(job.rows)) for take in range(o.takes)]  # (sentence, take) rows
        lat: dict[tuple[int, int], list[Tensor]] = {}
        stop: dict[tuple[int, int], str] = {}
        t1 = time.perf_counter()
        per_pass = self._rows_per_pass(decoding)
        for a in range(0, len(todo), per_pass):
            part = todo[a : a + per_pass]
            for r, z, reason in self._frames(
                [job.rows[k] for k, _ in part],
                [job.prompt] * len(part),
                decoding,
                [self._generator(o.seed, k, take) for k, take in part],
            ):
                if z is not None:
                    lat.setdefault(part[r], []).append(z)
                else:
                    stop[part[r]] = reason
        chosen = self._choose(job.rows, o.takes, lambda k, t: lat.get((k, t), []))
        t2 = time.perf_counter()
        frames = [lat.get((k, take), []) for k, (take, _) in enumerate(chosen)]
        pieces = [self._decode_audio(x) for x in frames]
        t_vae = time.perf_counter() - t2
        stops = [stop.get((k, take), "eos") for k, (take, _) in enumerate(chosen)]
        return self._result(job, pieces, [len(x) for x in frames], stops, t2 - t1, t_vae, t0, chosen)

    def _rows_per_pass(self, decoding: Decoding) -> int:
        """Sentences ``synthesize`` decodes together: ``SENTENCE_ROWS`` (weights read once per step for all), but
        one at a time when one-row steps run in ONNX Runtime with the one-step head (latentlm/row_loop.py: a
        4-sentence paragraph 1.25x faster one at a time for the demo release, 2.2x for a 100M model, where
        batches run eager; benchmarks/bench_tts.py)."""
        fast = self.lm.trunk.runtime is not None and decoding.head == "one_step"
        return 1 if fast else self.SENTENCE_ROWS

    def _choose(
        self, rows: list[Row], takes: int, items: Callable[[int, int], list[Tensor]]
    ) -> list[tuple[int, list[float] | None]]:
        """Per sentence: (the take kept, every take's score (``_best_take``); None with one take). ``items(k, t)``:
        the generated items of take t of sentence k."""
        if takes == 1:
            return [(0, None)] * len(rows)
        return [self._best_take([items(k, t) for t in range(takes)], row) for k, row in enumerate(rows)]

    @torch.no_grad()
    def stream(
        self,
        text: str,
        prompt_audio,
        prompt_text: str | None = None,
        steps: int = 10,
        cfg: float | None = None,
        temperature: float | None = None,
        seed: int = 0,
        max_seconds: float | None = None,
        chunk_frames: int = 4,
        first_chunk_frames: int = 1,
        speed: float = 1.0,
        head: str | None = None,
        takes: int = 1,
        bridge: bool = True,
        options: SynthesisOptions | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks while frames are generated (the first after ``first_chunk_frames``
        frames, then every ``chunk_frames``). The chunks concatenate to ``synthesize`` with the same arguments
        less its leading ``edge_seconds`` of silence (a live listener would only wait for it; the trailing one is
        the last chunk). Bad input raises when the first chunk is asked for, before any frame is generated."""
        if chunk_frames < 1 or first_chunk_frames < 1:
            raise TTSInputError("chunk_frames and first_chunk_frames must be >= 1")
        kw = dict(
            steps=steps, cfg=cfg, temperature=temperature, seed=seed, max_seconds=max_seconds, speed=speed,
            head=head, takes=takes, bridge=bridge,
        )
        o = SynthesisOptions.merge(options, **kw)  # checked before any work
        decoding = self._decoding(o)
        if o.takes > 1:
            raise TTSInputError(
                f"takes {o.takes}: a take is kept only once every take of the sentence is done, so it cannot "
                "stream; use synthesize (or takes=1)"
            )
        job = prepare_job(self, text, prompt_audio, prompt_text, o.max_seconds, speed=o.speed)
        for i, row in enumerate(job.rows):
            if i:
                yield self._silence(self.cfg.pause_seconds)

            def latent_chunks(row=row, i=i) -> Iterator[Tensor]:
                g = [self._generator(o.seed, i)]
                buf, want = [], first_chunk_frames
                for _, z, _reason in self._frames([row], [job.prompt], decoding, g):
                    if z is None:
                        continue
                    buf.append(z)
                    if len(buf) >= want:
                        yield self._vae_frames(buf)  # [t * patch, D]
                        buf, want = [], chunk_frames
                if buf:
                    yield self._vae_frames(buf)

            for y in self.vae.decode_stream(latent_chunks()):
                yield y.cpu().numpy().astype(np.float32)
        tail = self._silence(self.cfg.edge_seconds)  # the trailing edge silence (no leading one: it would delay speech)
        if len(tail):
            yield tail

    @torch.no_grad()
    def synthesize_batch(
        self, jobs: list[dict], batch_size: int = 8, on_error: str = "raise"
    ) -> list[SynthesisResult | TTSInputError]:
        """Several jobs ({"text", "prompt_audio", "prompt_text"?, "steps"?, "cfg"?, "temperature"?, "seed"?,
        "max_seconds"?, "continuation"?, "speed"?, "takes"?, "bridge"?}) decoded together: every sentence of every
        job (every take of it, with ``takes``) is one row of a right-padded batch
        (rows grouped by head/steps/cfg/temperature, ``batch_size`` rows per pass; one, where one-row steps run in
        ONNX Runtime with the one-step head: ``_rows_per_pass``). Every row draws its noise from
        its own generator, seeded from (job seed, sentence index) exactly as ``synthesize`` does, so each
        result equals ``synthesize`` with the same seed (up to float rounding of batched matmuls), at any
        temperature. Every job's settings are a ``SynthesisOptions`` (checked before any work). ``on_error="return"``
        puts the TTSInputError of a bad job (text, prompt or settings) in its place instead of raising; the other
        jobs still return their audio."""
        if on_error not in ("raise", "return"):
            raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        t0 = time.perf_counter()
        keys = ("text", "prompt_audio", "prompt_text", "continuation", *SynthesisOptions().to_dict())
        prepared: list[SynthesisJob | TTSInputError] = []
        settings: list[tuple[int, Decoding, int] | None] = []  # per job: (seed, what it decodes with, takes)
        for i, job in enumerate(jobs):
            try:
                if not isinstance(job, dict):
                    raise TTSInputError(f"a job must be a dict of settings, got {type(job).__name__}")
                unknown = sorted(set(job) - set(keys) - {"id", "out"})
                if unknown:
                    raise TTSInputError(f"unknown job key(s) {unknown}; valid: {list(keys)}")
                if "text" not in job or "prompt_audio" not in job:
                    raise TTSInputError("a job needs 'text' and 'prompt_audio'")
                o = SynthesisOptions.from_mapping(job)  # before any work: a bad value fails this job only
                decoding = self._decoding(o)  # settings the release cannot decode with fail here too
                self._check_takes(o)
                prepared.append(
                    prepare_job(
                        self,
                        job["text"],
                        job["prompt_audio"],
                        job.get("prompt_text"),
                        o.max_seconds,
                        bool(job.get("continuation", False)),
                        o.speed,
                    )
                )
                settings.append((o.seed, decoding, o.takes))
            except TTSInputError as e:
                if on_error == "raise":
                    raise TTSInputError(f"job {i}: {e}") from e
                prepared.append(e)
                settings.append(None)
        rows = []  # (job index, sentence index, decoding, seed, take)
        for i, (p, st) in enumerate(zip(prepared, settings)):
            if isinstance(p, SynthesisJob):
                seed, key, takes = st
                rows += [(i, s, key, seed, t) for s in range(len(p.rows)) for t in range(takes)]
        lat: dict[tuple[int, int, int], list[Tensor]] = {}
        stop: dict[tuple[int, int, int], str] = {}
        t1 = time.perf_counter()
        for key in sorted({r[2] for r in rows}):
            group = [r for r in rows if r[2] == key]
            per_pass = min(batch_size, self._rows_per_pass(key))  # one at a time on the ONNX one-step path
            for a in range(0, len(group), per_pass):
                part = group[a : a + per_pass]
                g = [self._generator(seed, s, t) for _, s, _, seed, t in part]  # one per row, as in synthesize
                rs = [prepared[i].rows[s] for i, s, *_ in part]
                pr = [prepared[i].prompt for i, *_ in part]
                for r, z, reason in self._frames(rs, pr, key, g):
                    k = (part[r][0], part[r][1], part[r][4])
                    if z is not None:
                        lat.setdefault(k, []).append(z)
                    else:
                        stop[k] = reason
        t_gen = time.perf_counter() - t1
        out: list[SynthesisResult | TTSInputError] = []
        for i, p in enumerate(prepared):
            if not isinstance(p, SynthesisJob):
                out.append(p)
                continue
            chosen = self._choose(p.rows, settings[i][2], lambda s, t, i=i: lat.get((i, s, t), []))
            t2 = time.perf_counter()
            frames = [lat.get((i, s, take), []) for s, (take, _) in enumerate(chosen)]
            pieces = [self._decode_audio(f) for f in frames]
            t_vae = time.perf_counter() - t2
            stops = [stop.get((i, s, take), "eos") for s, (take, _) in enumerate(chosen)]
            out.append(self._result(p, pieces, [len(f) for f in frames], stops, t_gen, t_vae, t0, chosen))
        return out
