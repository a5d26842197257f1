"""Gradio demo: zero-shot voice cloning with LatentLM (a few seconds of a voice + text -> that voice saying it).

    python app.py [--checkpoint checkpoints/tts_demo] [--host 127.0.0.1] [--port 7860] [--share]

The UI is built by ``build_demo(tts_or_loader)``; importing this file loads no model and builds no UI. The app is
a thin front end: it calls only the public TTS API (``TTS.from_pretrained(...).synthesize / .stream``) and, for
"Check it", the offline evaluation backends (Whisper base ASR, Resemblyzer speaker similarity).
See docs/APP.md for the controls and limits.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import logging
import shutil
import sys
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

REPO = Path(__file__).resolve().parent
EXAMPLES_DIR = REPO / "examples"
DEFAULT_CHECKPOINT = "checkpoints/tts_demo"
log = logging.getLogger("latentlm.app")

MISSING_CHECKPOINT = """\
No TTS release found at {path} (a release is a folder with config.json + model.safetensors).
  - The repository's demo release lives in checkpoints/tts_demo once it has been trained and exported
    (see README.md, "Train a TTS model").
  - Or train your own with `python -m tts.train <recipe.yaml>` and pass its release folder:
      python app.py --checkpoint path/to/release"""


@dataclass
class AppConfig:
    """Limits and backends of the demo."""

    max_text_chars: int = 600
    min_prompt_seconds: float = 1.0
    max_prompt_seconds: float = 30.0
    max_file_size: str = "10mb"  # Gradio rejects bigger uploads before they reach the app
    concurrency: int = 1  # synthesis jobs at once (the queue holds the rest)
    max_queue: int = 16  # waiting jobs beyond this are refused with "queue full"
    asr: str = "whisper-base"  # evaluation.asr.build_asr spec for "Check it"
    sim: str = "resemblyzer"  # evaluation.speaker.build_sim spec for "Check it"
    streaming: bool | None = None  # streamed playback; None: on when ffmpeg exists (Gradio encodes with it)


class _Lazy:
    """Builds an object on first use, once, from any thread."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory, self._obj, self._lock = factory, None, threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._obj is None:
                self._obj = self._factory()
        return self._obj


def _friendly(fn: Callable) -> Callable:
    """Turn every failure of a handler into a readable gr.Error; the server keeps serving."""

    def convert(e: Exception) -> gr.Error:
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, ValueError):  # TTSInputError, AudioError and other bad-input errors
            return gr.Error(str(e))
        log.exception("handler %s failed", fn.__name__)
        return gr.Error(f"Synthesis failed ({type(e).__name__}: {e}). The demo is still running; try again.")

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise convert(e) from None

    @wraps(fn)
    def gen_wrapper(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
        except Exception as e:
            raise convert(e) from None

    return gen_wrapper if inspect.isgeneratorfunction(fn) else wrapper


# ---------------------------------------------------------------------------------------------- input checks


def read_prompt(path: str | None, cfg: AppConfig) -> tuple[int, np.ndarray]:
    """The uploaded/recorded prompt file -> (sample_rate, mono float32 (T,)), or a readable error: the TTS API's
    own prompt loader (tts/prompt.py; rate and length are checked from the header, before decoding)."""
    from tts.prompt import PromptLimits
    from tts.prompt import read_prompt as read_checked

    if not path:
        raise gr.Error(
            "Add a voice prompt first: upload a clip or record one (3-10 s of clear speech is best)."
        )
    return read_checked(str(path), PromptLimits(cfg.min_prompt_seconds, cfg.max_prompt_seconds))


def check_text(text: str | None, cfg: AppConfig) -> str:
    text = (text or "").strip()
    if not text:
        raise gr.Error("Type the text you want the cloned voice to say.")
    if len(text) > cfg.max_text_chars:
        raise gr.Error(f"The text has {len(text)} characters; the limit is {cfg.max_text_chars}.")
    return text


def to_int16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 without Gradio's peak normalisation (keeps the model's loudness)."""
    return (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """One mono 16-bit WAV file in memory (the chunk format Gradio's streamed audio reads without ffmpeg)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(to_int16(audio).tobytes())
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ outputs


def spectrogram_image(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-magnitude STFT of ``audio`` as an RGB image (H, W, 3) uint8 (matplotlib Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.signal import stft

    n_fft = 1024 if sample_rate > 20000 else 512
    freqs, times, spec = stft(
        audio, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - n_fft // 4
    )  # (F, frames)
    db = 20 * np.log10(np.abs(spec) + 1e-6)
    db = np.maximum(db, db.max() - 80.0)  # 80 dB dynamic range
    fig = Figure(figsize=(8, 2.8), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    extent = (0.0, float(times[-1]) if times.size else 0.0, 0.0, float(freqs[-1]) / 1000)
    im = ax.imshow(db, origin="lower", aspect="auto", extent=extent, cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    fig.colorbar(im, ax=ax, label="dB", pad=0.01)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 4) -> (H, W, 3)


class Checker:
    """'Check it': offline ASR transcript + WER against the input text, and speaker similarity to the prompt."""

    def __init__(self, asr: str = "whisper-base", sim: str = "resemblyzer"):
        from evaluation.asr import build_asr
        from evaluation.speaker import build_sim

        self._asr = _Lazy(lambda: build_asr(asr))
        self._sim = _Lazy(lambda: build_sim(sim))

    def __call__(self, audio: np.ndarray, sr: int, text: str, prompt: np.ndarray, prompt_sr: int) -> dict:
        from evaluation.normalize import normalize_text, word_errors
        from evaluation.speaker import cosine

        asr, sim = self._asr.get(), self._sim.get()
        hyp = asr.transcribe([audio], sample_rate=sr)[0]
        out: dict[str, Any] = {"asr_transcript": hyp}
        try:
            out["wer"] = round(word_errors(normalize_text(text), normalize_text(hyp)).wer, 4)
        except ValueError as e:  # the text normalises to nothing
            out["wer"], out["wer_note"] = None, str(e)
        try:
            e_gen = sim.embed([audio], sample_rate=sr)[0]
            e_prompt = sim.embed([prompt], sample_rate=prompt_sr)[0]
            out["speaker_similarity"] = round(cosine(e_gen, e_prompt), 4)
        except ValueError as e:  # e.g. no speech left after voice-activity trimming
            out["speaker_similarity"], out["similarity_note"] = None, str(e)
        out["asr_model"], out["sim_model"] = asr.model_id, sim.model_id
        return out


# ------------------------------------------------------------------------------------------------- the UI


def load_examples(text_override: str | None = None) -> list[list[str]]:
    """Rows [prompt path, prompt transcript, text] from examples/manifest.tsv (empty if the folder is gone)."""
    manifest = EXAMPLES_DIR / "manifest.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [
        [str(EXAMPLES_DIR / r["file"]), r["prompt_transcript"], text_override or r["text"]]
        for r in rows
        if (EXAMPLES_DIR / r["file"]).is_file()
    ]


def build_demo(
    tts_or_loader: Any,
    cfg: AppConfig | None = None,
    checker: Checker | None = None,
    image_model: tuple | None = None,
) -> gr.Blocks:
    """The demo as a gr.Blocks (queued). ``tts_or_loader``: a loaded TTS, or a zero-argument callable returning
    one (called on the first request). ``checker``: the 'Check it' backends (built lazily when None).
    ``image_model``: (LatentLM, ImageVAE) of a class-conditional image release; adds the image tab."""
    cfg = cfg or AppConfig()
    model = _Lazy(lambda: tts_or_loader) if hasattr(tts_or_loader, "synthesize") else _Lazy(tts_or_loader)
    check = _Lazy(lambda: checker or Checker(cfg.asr, cfg.sim))
    streaming = cfg.streaming if cfg.streaming is not None else shutil.which("ffmpeg") is not None
    # the release's own guidance default when the model is already loaded (TTSConfig.cfg_scale)
    default_cfg = float(getattr(getattr(tts_or_loader, "cfg", None), "cfg_scale", 1.5))
    default_temperature = float(getattr(getattr(tts_or_loader, "cfg", None), "temperature", 1.0))

    def settings(prompt_text, steps, guidance, temperature, seed, speed, head="default") -> dict:
        """The form's settings, checked first (SynthesisOptions: NaN, inf, huge seeds are refused). Guidance left
        at the release's value is the release's (a one-step head carries it distilled in); ``head`` "default" is
        the release's default head."""
        from tts.options import SynthesisOptions

        cfg_ = None if guidance is not None and abs(float(guidance) - default_cfg) < 1e-6 else guidance
        opts = SynthesisOptions(
            steps=steps,
            cfg=cfg_,
            temperature=temperature,
            seed=seed,
            speed=speed,
            head=None if head in (None, "default") else head,
        )
        return dict(prompt_text=(prompt_text or "").strip() or None, options=opts)

    @_friendly
    def clone(prompt_path, prompt_text, text, steps, guidance, temperature, seed, speed, do_check, head="default"):
        kwargs = settings(prompt_text, steps, guidance, temperature, seed, speed, head)
        prompt_sr, prompt = read_prompt(prompt_path, cfg)
        text = check_text(text, cfg)
        tts = model.get()
        t0 = time.perf_counter()
        res = tts.synthesize(text, (prompt_sr, prompt), **kwargs)
        elapsed = time.perf_counter() - t0
        audio = np.asarray(res.audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            raise gr.Error("The model produced no audio for this input; try another seed or a longer text.")
        seconds = audio.size / res.sample_rate
        info = f"**{seconds:.2f} s** of audio in {elapsed:.1f} s (real-time factor {elapsed / seconds:.2f})."
        report = check.get()(audio, res.sample_rate, text, prompt, prompt_sr) if do_check else None
        image = spectrogram_image(audio, res.sample_rate)
        return (res.sample_rate, to_int16(audio)), image, res.prompt_text, info, report

    @_friendly
    def clone_stream(prompt_path, prompt_text, text, steps, guidance, temperature, seed, speed, head="default"):
        kwargs = settings(prompt_text, steps, guidance, temperature, seed, speed, head)
        prompt_sr, prompt = read_prompt(prompt_path, cfg)
        text = check_text(text, cfg)
        tts = model.get()
        for chunk in tts.stream(text, (prompt_sr, prompt), **kwargs):
            yield wav_bytes(np.asarray(chunk, dtype=np.float32).reshape(-1), tts.sample_rate)

    with gr.Blocks(title="LatentLM voice cloning", analytics_enabled=False) as demo:
        gr.Markdown(
            "# LatentLM zero-shot voice cloning\n"
            "Give a few seconds of someone speaking and a text: a causal Transformer with a next-token "
            "diffusion head writes the speech in that voice. Use only voices you have permission to clone."
        )
        with gr.Tab("Voice cloning"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label=f"Voice prompt ({cfg.min_prompt_seconds:g}-{cfg.max_prompt_seconds:g} s; 3-10 s is best)",
                        elem_id="prompt_audio",
                    )
                    prompt_text = gr.Textbox(
                        label="Prompt transcript (optional: transcribed offline when empty)",
                        lines=2,
                        elem_id="prompt_text",
                    )
                    text = gr.Textbox(
                        label=f"Text to speak (up to {cfg.max_text_chars} characters)",
                        lines=4,
                        max_length=cfg.max_text_chars,
                        elem_id="text_input",
                    )
                    with gr.Accordion("Advanced", open=False):
                        steps = gr.Slider(1, 50, value=10, step=1, label="Diffusion steps (DPM-Solver++)")
                        guidance = gr.Slider(
                            1.0, 4.0, value=default_cfg, step=0.1, label="Guidance (CFG scale)"
                        )
                        temperature = gr.Slider(
                            0.1, 1.5, value=default_temperature, step=0.05, label="Temperature"
                        )
                        seed = gr.Number(value=0, precision=0, label="Seed")
                        speed = gr.Slider(
                            0.5, 2.0, value=1.0, step=0.05, label="Speed (models with a duration predictor)"
                        )
                        head = gr.Radio(
                            ["default", "one_step", "reference"],
                            value="default",
                            label="Diffusion head: the release's default, its distilled one-step head (about 2x "
                            "faster, at the release's guidance), or the reference head (uses the steps and guidance "
                            "above)",
                        )
                    do_check = gr.Checkbox(
                        value=False, label="Check it (ASR transcript + WER and speaker similarity; slower)"
                    )
                    with gr.Row():
                        generate = gr.Button("Generate", variant="primary", elem_id="generate_btn")
                        stream_btn = gr.Button("Stream", visible=streaming, elem_id="stream_btn")
                with gr.Column():
                    out_audio = gr.Audio(
                        label="Result", type="numpy", interactive=False, elem_id="output_audio"
                    )
                    out_stream = gr.Audio(
                        label="Streamed result (plays while it is generated)",
                        streaming=True,
                        autoplay=True,
                        interactive=False,
                        visible=streaming,
                        elem_id="stream_audio",
                    )
                    spec = gr.Image(
                        label="Spectrogram", type="numpy", interactive=False, elem_id="spectrogram"
                    )
                    used_text = gr.Textbox(label="Prompt transcript used", interactive=False)
                    info = gr.Markdown(elem_id="info")
                    report = gr.JSON(label="Check it", elem_id="check_report")
            rows = load_examples()
            if rows:
                gr.Examples(
                    rows, inputs=[prompt, prompt_text, text], label="Examples: click one, then Generate"
                )
        if image_model is not None:
            image_tab(*image_model)
        inputs = [prompt, prompt_text, text, steps, guidance, temperature, seed, speed]
        generate.click(
            clone, inputs + [do_check, head], [out_audio, spec, used_text, info, report], api_name="clone"
        )
        if streaming:
            stream_btn.click(clone_stream, inputs + [head], out_stream, api_name="clone_stream")
    demo.queue(default_concurrency_limit=cfg.concurrency, max_size=cfg.max_queue)
    return demo


def load_image_release(directory: str | Path) -> tuple:
    """(LatentLM, ImageVAE) from a `python -m latentlm.image.train` output folder (``lm/`` and ``vae/``)."""
    from latentlm.image.vae import ImageVAE
    from latentlm.model import LatentLM

    d = Path(directory)
    if not ((d / "lm" / "config.json").is_file() and (d / "vae" / "config.json").is_file()):
        raise ValueError(
            f"{d} is not an image release: expected lm/ and vae/ folders (python -m latentlm.image.train)"
        )
    return LatentLM.from_pretrained(d / "lm"), ImageVAE.from_pretrained(d / "vae")


def image_tab(lm: Any, vae: Any) -> None:
    """Class id in, images out (latentlm.image.generation.sample_images); call inside a gr.Blocks."""
    num_classes = int(lm.cfg.vocab_size)

    @_friendly
    def make_images(class_id, count, steps, guidance, seed) -> list[np.ndarray]:
        import torch

        from latentlm.image.generation import sample_images

        if not 0 <= int(class_id) < num_classes:
            raise gr.Error(f"Class id must be between 0 and {num_classes - 1}.")
        g = torch.Generator(next(lm.parameters()).device).manual_seed(int(seed))
        labels = [int(class_id)] * int(count)
        x = sample_images(lm, vae, labels, cfg=float(guidance), steps=int(steps), generator=g)  # [n, K, S, S]
        x = (
            ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        )  # [n, S, S, K]
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)  # grey -> RGB
        up = max(1, 128 // x.shape[1])
        return [img.repeat(up, axis=0).repeat(up, axis=1) for img in x]  # nearest-neighbour upscale

    with gr.Tab("Image (class-conditional)"):
        gr.Markdown("Next-token diffusion over an image VAE's latent grid: pick a class, get samples.")
        with gr.Row():
            with gr.Column():
                class_id = gr.Number(value=0, precision=0, label=f"Class id (0-{num_classes - 1})")
                count = gr.Slider(1, 16, value=8, step=1, label="Number of images")
                steps = gr.Slider(1, 50, value=10, step=1, label="Diffusion steps")
                guidance = gr.Slider(1.0, 6.0, value=2.0, step=0.1, label="Guidance (CFG scale)")
                seed = gr.Number(value=0, precision=0, label="Seed")
                button = gr.Button("Generate images", variant="primary", elem_id="image_btn")
            gallery = gr.Gallery(label="Samples", columns=4, elem_id="image_gallery")
        button.click(make_images, [class_id, count, steps, guidance, seed], gallery, api_name="images")


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           cfg: AppConfig | None = None, **kwargs):  # fmt: skip
    """Start the server (local only unless ``share``); the examples folder is the only extra path served."""
    cfg = cfg or AppConfig()
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=cfg.max_file_size,
        allowed_paths=[str(EXAMPLES_DIR)],
        show_error=True,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> int:
    from tts.options import add_runtime_arguments, runtime_kwargs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="TTS release folder")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--concurrency", type=int, default=1, help="synthesis jobs at once")
    add_runtime_arguments(p, fast=True)
    p.add_argument("--image-checkpoint", default=None, help="image release (lm/ + vae/): adds the image tab")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    ckpt = Path(args.checkpoint)
    if not (ckpt / "config.json").is_file():
        print(MISSING_CHECKPOINT.format(path=ckpt), file=sys.stderr)
        return 2
    import torch

    from tts.model import TTS

    torch.set_num_threads(args.threads)
    try:
        tts = TTS.from_pretrained(ckpt, **runtime_kwargs(args))
        image_model = load_image_release(args.image_checkpoint) if args.image_checkpoint else None
    except (ValueError, OSError) as e:  # a truncated / garbage release: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = AppConfig(concurrency=args.concurrency)
    launch(
        build_demo(tts, cfg, image_model=image_model),
        host=args.host,
        port=args.port,
        share=args.share,
        cfg=cfg,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
