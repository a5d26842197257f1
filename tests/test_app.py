"""The Gradio demo (app.py) served live on 127.0.0.1 and called through gradio_client, with a tiny release."""

from __future__ import annotations

import csv
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402

PROMPT = "dev/pyroomacoustics__cmu_arctic_us_aew_a0003.wav"
PROMPT_TEXT = "For the twentieth time that evening the two men shook hands."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tts(tmp_path_factory):
    from tests.helpers import make_tiny_release
    from tts.model import TTS

    return TTS.from_pretrained(make_tiny_release(tmp_path_factory.mktemp("release")))


@pytest.fixture(scope="module")
def server(tts):
    demo = app.build_demo(tts, app.AppConfig(streaming=False))
    _, url, _ = app.launch(demo, port=_free_port(), prevent_thread_lock=True, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    client = Client(url, verbose=False)
    yield client
    client.close()
    demo.close()


def _clone(client, prompt, text, prompt_text=PROMPT_TEXT, seed=0, check=False, head="default"):
    prompt = handle_file(str(prompt)) if prompt is not None else None
    return client.predict(prompt, prompt_text, text, 4, 1.5, 1.0, seed, 1.0, check, head, api_name="/clone")


def test_the_head_choice_reaches_the_api(server, real_speech_dir):
    """The form's diffusion head goes to SynthesisOptions.head: the reference head is this release's default;
    it has no one-step head, and asking for one says so."""
    default = sf.read(_clone(server, real_speech_dir / PROMPT, "Hello there.")[0], dtype="int16")[0]
    ref = sf.read(_clone(server, real_speech_dir / PROMPT, "Hello there.", head="reference")[0], dtype="int16")[0]
    assert np.array_equal(default, ref)
    with pytest.raises(AppError, match="has no one-step head"):
        _clone(server, real_speech_dir / PROMPT, "Hello there.", head="one_step")


def test_clone_returns_the_models_waveform(server, tts, real_speech_dir):
    audio_path, image_path, used_text, info, report = _clone(server, real_speech_dir / PROMPT, "Hello there.")
    wav, sr = sf.read(audio_path, dtype="int16")
    assert sr == tts.sample_rate and wav.ndim == 1 and wav.size > 0
    assert np.abs(wav).max() > 0
    assert used_text == PROMPT_TEXT and "real-time factor" in info and report is None
    from PIL import Image

    with Image.open(image_path) as im:
        assert im.size[0] >= 400 and im.size[1] >= 150  # a rendered spectrogram, not a placeholder

    # The app is a pass-through: same prompt, text and settings give the waveform synthesize() returns.
    prompt, prompt_sr = sf.read(real_speech_dir / PROMPT, dtype="float32")
    direct = tts.synthesize(
        "Hello there.",
        (prompt_sr, prompt),
        prompt_text=PROMPT_TEXT,
        steps=4,
        cfg=1.5,
        temperature=1.0,
        seed=0,
    )
    expected = app.to_int16(direct.audio)
    assert wav.shape == expected.shape
    assert np.abs(wav.astype(np.int32) - expected).max() <= 1

    other, _ = sf.read(_clone(server, real_speech_dir / PROMPT, "Hello there.", seed=1)[0], dtype="int16")
    assert other.shape != wav.shape or not np.array_equal(other, wav)  # the seed reaches the sampler


def test_bad_inputs_show_errors_and_the_server_keeps_serving(server, real_speech_dir, tmp_path):
    clip, sr = sf.read(real_speech_dir / PROMPT, dtype="float32")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(3 * sr, dtype=np.float32), sr)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 50)
    too_long = tmp_path / "long.wav"
    sf.write(too_long, np.tile(clip, 10), sr)  # 35 s
    cases = [
        (real_speech_dir / PROMPT, "   ", "Type the text"),
        (silent, "Hello.", "silent"),
        (corrupt, "Hello.", "Could not decode"),
        (too_long, "Hello.", "limit is 30"),
        (None, "Hello.", "Add a voice prompt"),
        (real_speech_dir / PROMPT, "x" * 601, "limit is 600"),
    ]
    for prompt, text, message in cases:
        with pytest.raises(AppError, match=message):
            _clone(server, prompt, text)
    audio_path = _clone(server, real_speech_dir / PROMPT, "Still here.")[0]
    assert sf.info(audio_path).frames > 0


def test_model_input_errors_reach_the_ui(tts, real_speech_dir):
    """A TTSInputError raised inside synthesize() becomes the UI's error message, word for word."""
    from tts.model import TTSInputError

    class Refusing:
        sample_rate = tts.sample_rate

        def synthesize(self, *args, **kwargs):
            raise TTSInputError("text has no pronounceable characters")

    demo = app.build_demo(Refusing(), app.AppConfig(streaming=False))
    _, url, _ = app.launch(demo, port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="no pronounceable characters"):
            _clone(client, real_speech_dir / PROMPT, "???")
        client.close()
    finally:
        demo.close()


def test_prompt_transcribed_offline_and_check_it(server, real_speech_dir):
    """Empty prompt transcript -> the TTS transcribes it; 'Check it' returns ASR text, WER and SIM."""
    _, _, used_text, _, report = _clone(
        server, real_speech_dir / PROMPT, "Good morning.", prompt_text="", check=True
    )
    from evaluation.normalize import normalize_text, word_errors

    assert word_errors(normalize_text(PROMPT_TEXT), normalize_text(used_text)).wer <= 0.3
    assert isinstance(report["asr_transcript"], str) and "whisper" in report["asr_model"]
    assert report["wer"] is not None and report["wer"] >= 0
    sim = report["speaker_similarity"]
    assert sim is None and report["similarity_note"] or -1.0 <= sim <= 1.0


def test_examples_point_at_real_clips_with_their_transcripts(real_speech_dir):
    rows = app.load_examples()
    assert len(rows) >= 3
    with (real_speech_dir / "dev" / "manifest.tsv").open(encoding="utf-8", newline="") as f:
        reference = {r["transcript"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    for path, transcript, text in rows:
        info = sf.info(path)
        assert 3.0 <= info.duration <= 8.0
        assert transcript in reference and text.strip()
        app.read_prompt(path, app.AppConfig())  # each example passes the app's own prompt checks


def test_spectrogram_of_real_speech(real_speech_dir):
    clip, sr = sf.read(real_speech_dir / PROMPT, dtype="float32")
    image = app.spectrogram_image(clip, sr)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 10  # a picture with structure, not a blank canvas


def test_missing_checkpoint_explains_what_to_do(tmp_path, capsys):
    assert app.main(["--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "No TTS release found" in err and "--checkpoint" in err


@pytest.mark.parametrize(
    "flags, runtime",
    [([], "int8"), (["--backend", "torch"], None), (["--backend", "onnx", "--quantize", "none"], "float32")],
)
def test_main_loads_the_fast_int8_path_by_default(tmp_path, monkeypatch, flags, runtime):
    """By default the demo runs the release with ONNX Runtime's int8 decode steps (the fastest path), bound to
    127.0.0.1; --backend torch keeps every step in PyTorch, --quantize none keeps ONNX Runtime in float32."""
    import torch

    from tests.helpers import make_tiny_release

    torch.manual_seed(0)
    release = make_tiny_release(tmp_path / "tiny")
    built, launched = [], []
    monkeypatch.setattr(app, "build_demo", lambda tts, cfg, image_model=None: built.append(tts) or "demo")
    monkeypatch.setattr(app, "launch", lambda demo, **kw: launched.append((demo, kw)))
    assert app.main(["--checkpoint", str(release), *flags]) == 0
    [tts] = built
    rt = tts.lm.trunk.runtime
    assert (rt is None) if runtime is None else (rt.int8 == (runtime == "int8"))
    assert launched == [("demo", launched[0][1])] and launched[0][1]["host"] == "127.0.0.1"


def test_streamed_playback_covers_the_whole_result(tts, real_speech_dir):
    """'Stream' plays chunks while they are generated; the HLS playlist Gradio builds from them (AAC, which
    needs ffmpeg) adds up to the same duration as synthesize() with the same settings."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("Gradio encodes streamed audio with ffmpeg, which is not installed")
    demo = app.build_demo(tts, app.AppConfig(streaming=True))
    _, url, _ = app.launch(demo, port=_free_port(), prevent_thread_lock=True, quiet=True)
    text = "Hi there. Bye now."
    try:
        client = Client(url, verbose=False)
        job = client.submit(
            handle_file(str(real_speech_dir / PROMPT)),
            PROMPT_TEXT,
            text,
            4,
            1.5,
            1.0,
            0,
            1.0,
            "default",
            api_name="/clone_stream",
        )
        updates = list(job)
        playlist = Path(job.result()).read_text()
        client.close()
    finally:
        demo.close()
    seconds = sum(
        float(line[len("#EXTINF:") :].rstrip(",")) for line in playlist.splitlines() if "#EXTINF:" in line
    )
    direct = tts.synthesize(text, real_speech_dir / PROMPT, prompt_text=PROMPT_TEXT, steps=4)
    assert len(updates) > 2  # the browser got audio before the end
    assert seconds == pytest.approx(len(direct.audio) / direct.sample_rate, abs=0.15)


def test_image_tab_turns_a_class_into_images(tts, tmp_path):
    """The image tab serves latentlm.image's class-conditional sampler (tiny untrained release here)."""
    from latentlm.head import HeadConfig
    from latentlm.image.vae import ImageVAE, ImageVAEConfig
    from latentlm.model import LatentLM, LatentLMConfig
    from latentlm.transformer import TransformerConfig

    vae_cfg = ImageVAEConfig(image_size=16, channels=1, width=8, levels=2)
    lm_cfg = LatentLMConfig(
        vocab_size=10,
        trunk=TransformerConfig(dim=32, n_layers=1, n_heads=2, max_seq_len=64),
        modalities={"image": HeadConfig(latent_dim=4, cond_dim=32, width=32, depth=1)},
    )
    LatentLM(lm_cfg).save_pretrained(tmp_path / "img" / "lm")
    ImageVAE(vae_cfg).save_pretrained(tmp_path / "img" / "vae")
    with pytest.raises(ValueError, match="not an image release"):
        app.load_image_release(tmp_path)
    demo = app.build_demo(
        tts, app.AppConfig(streaming=False), image_model=app.load_image_release(tmp_path / "img")
    )
    _, url, _ = app.launch(demo, port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        gallery = client.predict(3, 5, 2, 1.5, 0, api_name="/images")
        with pytest.raises(AppError, match="between 0 and 9"):
            client.predict(10, 1, 2, 1.5, 0, api_name="/images")
        client.close()
    finally:
        demo.close()
    from PIL import Image

    assert len(gallery) == 5
    for item in gallery:
        with Image.open(item["image"]) as im:
            assert im.size == (128, 128)  # 16 px upscaled x8
