"""The HTTP speech API (tts/server.py): a real server in a subprocess, called with the official ``openai`` client
and with plain HTTP (httpx). Most tests use a tiny untrained release (its audio is noise of the right length);
the slow one clones a real voice with checkpoints/tts_demo and checks the words with offline Whisper."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
import torch

from tests.helpers import ServerProcess, make_tiny_release, make_tiny_tts
from tts.audio_formats import PCM_RATE, FormatError, check_format, encode_stream, wav_header
from tts.job_pool import JobPool, QueueFull
from tts.resample import StreamResampler
from tts.voices import VoiceExists, VoiceInputError, VoiceNotFound, VoiceStore

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CLIP = EXAMPLES / "lj_LJ001-0011.wav"
CLIP_TEXT = "it is of the first importance that the letter used should be fine in form;"
KEY = "test-key-123"
SR = 16000  # the tiny release's and tts_demo's rate


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_error(r: httpx.Response, status: int, param: str | None = "any") -> dict:
    """An OpenAI-shaped error answer with this status (and param, unless "any")."""
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    if param != "any":
        assert err["param"] == param, err
    return err


def speech_body(**kw) -> dict:
    return {"model": "tts-1", "input": "Hi.", "voice": "lj", "response_format": "wav", "steps": 2, **kw}


def read_audio(data: bytes) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    return audio, sr


# ---------------------------------------------------------------------------------------------- parts, in process


def test_encode_stream_formats():
    chunks = [np.full(640, 0.1, np.float32), np.full(2560, -0.2, np.float32)]
    wav = b"".join(encode_stream(iter(chunks), "wav", SR))
    assert wav.startswith(wav_header(SR))  # sizes say "unknown": a streamed file
    audio, sr = read_audio(wav)
    assert sr == SR and audio.shape == (3200,) and abs(audio[0] - 0.1) < 1e-3 and abs(audio[-1] + 0.2) < 1e-3
    pcm = b"".join(encode_stream(iter(chunks), "pcm", SR))  # OpenAI's rate, 24 kHz
    assert len(pcm) == 2 * 4800 and abs(np.frombuffer(pcm, "<i2")[300] - 0.1 * 32767) < 100
    audio, sr = read_audio(b"".join(encode_stream(iter(chunks), "flac", SR)))
    assert sr == SR and audio.shape == (3200,)
    with pytest.raises(FormatError, match="aac"):
        check_format("aac")


@pytest.mark.parametrize("rate_in", [16000, 22050, 24000, 48000])
def test_stream_resampler_equals_resample_poly(rate_in):
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).standard_normal(10007).astype(np.float32)
    g = np.gcd(rate_in, PCM_RATE)
    want = resample_poly(x.astype(np.float64), PCM_RATE // g, rate_in // g)
    rs, pieces, at = StreamResampler(rate_in, PCM_RATE), [], 0
    for n in (1, 640, 2560, 3, 2560, 2560, 10000):  # chunks of any size, the last one short
        pieces.append(rs.feed(x[at : at + n]))
        at += n
    got = np.concatenate([*pieces, rs.flush()])
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-6
    assert len(rs.x) < 50  # only the inputs later outputs need are kept


def test_encode_stream_fails_before_any_byte():
    """A request the model refuses (its checks run when the first chunk is asked for) sends nothing."""

    def refused():
        raise ValueError("text is empty")
        yield  # pragma: no cover

    for fmt in ("wav", "pcm", "flac") + (("mp3",) if shutil.which("ffmpeg") else ()):
        with pytest.raises(ValueError, match="text is empty"):
            next(encode_stream(refused(), fmt, SR))


def test_mp3_and_opus_need_ffmpeg(monkeypatch):
    import tts.audio_formats as af

    monkeypatch.setattr(af.shutil, "which", lambda name: None)
    for fmt in ("mp3", "opus"):
        with pytest.raises(FormatError, match="needs ffmpeg"):
            check_format(fmt)
    assert check_format("wav") == "wav"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_mp3_and_opus_stream_through_ffmpeg():
    chunks = [np.sin(np.arange(n) / 7).astype(np.float32) * 0.3 for n in [640] + [2560] * 12]
    for fmt in ("mp3", "opus"):
        audio, sr = read_audio(b"".join(encode_stream(iter(chunks), fmt, SR)))
        assert abs(len(audio) / sr - sum(map(len, chunks)) / SR) < 0.1  # encoder delay / padding only


def test_voice_store_checks_saves_and_reloads(tmp_path):
    tts = make_tiny_tts()
    store = VoiceStore(tmp_path / "voices", tts)
    voice = store.add("lj", str(CLIP), "  it is of the first\nimportance ")
    assert voice.transcript == "it is of the first importance" and voice.transcript_source == "given"
    assert voice.sample_rate == tts.sample_rate and 4 < voice.seconds < 5
    sr, audio = store.prompt("lj")
    assert sr == tts.sample_rate and audio.dtype == np.float32
    assert [p.name for p in (tmp_path / "voices").iterdir()] == ["lj.safetensors"]  # one file, no leftovers
    again = VoiceStore(tmp_path / "voices", tts)  # a restart
    assert again.list() == [voice]
    np.testing.assert_array_equal(again.prompt("lj")[1], audio)
    with pytest.raises(VoiceExists):
        again.add("lj", str(CLIP), "x")
    with pytest.raises(VoiceInputError) as e:
        again.add("../evil", str(CLIP), "x")
    assert e.value.param == "name"
    with pytest.raises(VoiceInputError) as e:
        again.add("short", (SR, np.full(SR // 2, 0.1, np.float32)), "x")  # the model's check: too short
    assert e.value.param == "audio" and "too short" in str(e.value)
    with pytest.raises(VoiceInputError) as e:
        again.add("nothing", str(CLIP), "!!!")
    assert e.value.param == "transcript"
    with pytest.raises(VoiceInputError, match="positions"):  # prompt + transcript leave no room to speak
        again.add("wordy", str(CLIP), "word " * 3000)
    assert [v.name for v in again.list()] == ["lj"]
    again.delete("lj")
    assert again.list() == [] and not (tmp_path / "voices" / "lj.safetensors").exists()
    with pytest.raises(VoiceNotFound):
        again.prompt("lj")


def test_job_pool_refuses_beyond_its_queue_and_cancel_frees_the_worker():
    import asyncio

    async def scenario():
        pool = JobPool(workers=1, max_queue=1)
        release = threading.Event()

        def slow():
            for i in range(1000):
                release.wait(0.01)
                yield i

        a = pool.submit(slow)
        assert await a.next() == 0
        b = pool.submit(lambda: iter([1, 2]))  # waits
        assert pool.stats() == {"workers": 1, "max_queue": 1, "busy": 1, "queued": 1}
        with pytest.raises(QueueFull):
            pool.submit(lambda: iter([]))
        b.cancel()  # b leaves while it waits: its place is free at once
        assert pool.stats()["queued"] == 0
        b = pool.submit(lambda: iter([1, 2]))
        a.cancel()  # the worker stops after the item it is on and takes b
        assert [x async for x in b] == [1, 2]
        assert pool.stats()["busy"] == 0 and pool.stats()["queued"] == 0
        with pytest.raises(ZeroDivisionError):
            await pool.call(lambda: 1 / 0)
        pool.shutdown()

    asyncio.run(scenario())


def test_frontend_is_thread_safe():
    """Several server workers phonemize at once; espeak-ng's global state used to mix their outputs up."""
    from tts.frontend import Frontend

    fe = Frontend("en-us")
    texts = [f"Sentence {i} is about {i * 7} apples and the weather." for i in range(20)]
    want = [fe.encode(t) for t in texts]
    wrong = []

    def run():
        for _ in range(3):
            wrong.extend(i for i, t in enumerate(texts) if fe.encode(t) != want[i])

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_cli_refuses_a_missing_release_with_exit_2(tmp_path, capsys):
    from tts.server import main

    assert main(["--checkpoint", str(tmp_path / "nothing"), "--voices", str(tmp_path / "v")]) == 2
    assert "cannot load TTS release" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [[], ["--backend", "onnx", "--quantize", "int8"]])
def test_cli_loads_the_fast_int8_path_by_default(tmp_path, monkeypatch, flags):
    """By default (and as asked) the server serves the release with ONNX Runtime's int8 decode steps."""
    import uvicorn

    from tts.server import main

    torch.manual_seed(0)
    release = make_tiny_release(tmp_path / "tiny")
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, kw)))
    args = ["--checkpoint", str(release), "--voices", str(tmp_path / "v"), *flags]
    assert main(args) == 0
    [(fastapi_app, kw)] = served
    tts = fastapi_app.state.voices.tts
    assert tts.lm.trunk.runtime is not None and tts.lm.trunk.runtime.int8 and kw["host"] == "127.0.0.1"


# ---------------------------------------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return make_tiny_release(tmp_path_factory.mktemp("server") / "tiny")


@pytest.fixture(scope="module")
def server(tiny_release, tmp_path_factory):
    """The tiny release behind a key: 2 workers, 8 waiting, small limits; the voice "lj" registered."""
    args = ["--checkpoint", str(tiny_release), "--voices", str(tmp_path_factory.mktemp("voices"))]
    args += ["--api-key", KEY, "--workers", "2", "--max-queue", "8", "--max-input-chars", "300"]
    args += ["--max-upload-mb", "1"]
    with ServerProcess(args) as srv:
        srv.http = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        r = srv.http.post(
            "/v1/voices",
            data={"name": "lj", "transcript": CLIP_TEXT},
            files={"audio": ("lj.wav", CLIP.read_bytes(), "audio/wav")},
        )
        assert r.status_code == 201, r.text
        yield srv
        srv.http.close()


def test_openai_client_speech_and_streaming(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    res = client.audio.speech.create(model="tts-1", voice="lj", input="Hello there.", response_format="wav")
    audio, sr = read_audio(res.content)
    assert sr == SR and 1.0 < len(audio) / sr < 20.0 and np.isfinite(audio).all()

    text = "Hello there. This is the second sentence."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="lj", input=text, response_format="pcm", extra_body={"seed": 3, "steps": 2}
    ) as r:
        assert r.headers["content-type"] == "audio/pcm" and r.headers["x-sample-rate"] == str(PCM_RATE)
        pieces = list(r.iter_bytes())
    total = sum(map(len, pieces))
    # the first piece is the first sentence's first frame(s), not the whole text (25 Hz: 40 ms a frame)
    assert len(pieces) > 2 and len(pieces[0]) < total / 4
    assert total % 2 == 0 and total / 2 / PCM_RATE > 2.0
    # the same request again gives the same audio (seeded), read whole by plain HTTP
    same = server.http.post("/v1/audio/speech", json=speech_body(input=text, response_format="pcm", seed=3))
    assert same.status_code == 200 and same.content == b"".join(pieces)


def test_formats_over_http(server):
    for fmt in ("wav", "flac", "pcm") + (("mp3", "opus") if shutil.which("ffmpeg") else ()):
        r = server.http.post("/v1/audio/speech", json=speech_body(response_format=fmt))
        assert r.status_code == 200, (fmt, r.text)
        if fmt == "pcm":
            seconds = len(r.content) / 2 / PCM_RATE
        else:
            audio, sr = read_audio(r.content)
            seconds = len(audio) / sr
        assert 1.0 < seconds < 10.0, (fmt, seconds)
    body = speech_body()
    del body["response_format"]  # OpenAI's default, mp3, where ffmpeg can make it
    r = server.http.post("/v1/audio/speech", json=body)
    assert r.headers["content-type"] == ("audio/mpeg" if shutil.which("ffmpeg") else "audio/wav")


def test_voices_lifecycle_over_http(server):
    http = server.http
    assert "lj" in [v["name"] for v in http.get("/v1/voices").json()["data"]]
    r = http.post(
        "/v1/voices",
        data={"name": "arctic", "transcript": "For the twentieth time that evening the two men shook hands."},
        files={"audio": ("a.wav", (EXAMPLES / "arctic_aew_a0003.wav").read_bytes(), "audio/wav")},
    )
    assert r.status_code == 201 and r.json()["name"] == "arctic" and r.json()["transcript_source"] == "given"
    assert http.get("/v1/voices/arctic").json()["seconds"] == r.json()["seconds"]
    ok = http.post("/v1/audio/speech", json=speech_body(voice="arctic"))
    assert ok.status_code == 200 and len(read_audio(ok.content)[0]) > 0
    assert http.delete("/v1/voices/arctic").json() == {"id": "arctic", "object": "voice", "deleted": True}
    assert_error(http.get("/v1/voices/arctic"), 404)
    assert_error(http.delete("/v1/voices/arctic"), 404)
    assert_error(http.post("/v1/audio/speech", json=speech_body(voice="arctic")), 404, "voice")


def test_bad_speech_bodies_get_4xx_json(server):
    post = server.http.post
    cases = [
        ({"input": "Hi.", "voice": "lj"}, 400, "model"),
        (speech_body(input=""), 400, "input"),
        (speech_body(input="Hello. " * 60), 400, "input"),  # over --max-input-chars
        (speech_body(input=123), 400, "input"),
        (speech_body(voice="nobody"), 404, "voice"),
        (speech_body(model="gpt-9"), 404, "model"),
        (speech_body(response_format="aac"), 400, "response_format"),
        (speech_body(speed=9), 400, "speed"),
        (speech_body(steps=0), 400, "steps"),
        (speech_body(seed=-1), 400, "seed"),
        (speech_body(head="two_step"), 400, "head"),
        (speech_body(head="one_step"), 400, "head"),  # this release has none: the model's own check
        (speech_body(color="red"), 400, "color"),
        (speech_body(input="!!! ???"), 400, "input"),  # nothing to speak: the model's own check
    ]
    for body, status, param in cases:
        assert_error(post("/v1/audio/speech", json=body), status, param)
    headers = {"Content-Type": "application/json"}
    assert_error(post("/v1/audio/speech", content=b"{not json", headers=headers), 400)
    nan = json.dumps(speech_body()).replace('"steps": 2', '"cfg": NaN')
    assert_error(post("/v1/audio/speech", content=nan.encode(), headers=headers), 400, "cfg")
    assert_error(server.http.get("/v1/nothing"), 404)
    assert server.http.get("/health").json()["busy"] == 0  # nothing was left running


def test_bad_uploads_get_4xx_json(server):
    post = server.http.post

    def wav(audio: np.ndarray) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, audio, SR, format="WAV")
        return buf.getvalue()

    clip = CLIP.read_bytes()
    cases = [
        ({"name": "x"}, {"audio": ("notes.txt", b"not audio at all", "text/plain")}, 400, "audio"),
        (
            {"name": "x"},
            {"audio": ("short.wav", wav(np.full(SR // 2, 0.1, np.float32)), "audio/wav")},
            400,
            "audio",
        ),
        (
            {"name": "x"},
            {"audio": ("silent.wav", wav(np.zeros(2 * SR, np.float32)), "audio/wav")},
            400,
            "audio",
        ),
        ({"name": "../x"}, {"audio": ("a.wav", clip, "audio/wav")}, 400, "name"),
        ({"name": "lj"}, {"audio": ("a.wav", clip, "audio/wav")}, 409, "name"),
        ({"name": "x", "transcript": "!!!"}, {"audio": ("a.wav", clip, "audio/wav")}, 400, "transcript"),
        ({}, {"audio": ("a.wav", clip, "audio/wav")}, 400, "name"),
        ({"name": "x"}, None, 400, "any"),
        ({"name": "x"}, {"audio": ("big.wav", b"\0" * (3 << 19), "audio/wav")}, 413, None),  # > 1 MB
    ]
    for data, files, status, param in cases:
        err = assert_error(post("/v1/voices", data=data, files=files), status, param)
        assert "/tmp" not in err["message"]  # names the upload, not the server's temporary copy
    # no Content-Length (chunked): counted while it is read
    chunked = (b"\0" * 65536 for _ in range(24))
    assert_error(post("/v1/audio/speech", content=chunked, headers={"Content-Type": "application/json"}), 413)
    assert [v["name"] for v in server.http.get("/v1/voices").json()["data"]] == ["lj"]


def test_wrong_key_is_401(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        for method, path in (("GET", "/v1/models"), ("GET", "/v1/voices"), ("POST", "/v1/audio/speech")):
            r = httpx.request(method, server.url + path, headers=headers, json=speech_body(), timeout=30)
            assert assert_error(r, 401)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).audio.speech.create(
            model="tts-1", voice="lj", input="Hi."
        )


def test_eight_concurrent_requests_all_succeed(server):
    """8 at once on 2 workers: all answered, each with the audio it gets alone (nothing shared leaks between
    jobs: espeak-ng's state did before it had a lock)."""
    texts = ["Hi there.", "Good morning, friend."]
    body = lambda i: speech_body(input=texts[i % 2], seed=i % 2, response_format="pcm")  # noqa: E731
    alone = [server.http.post("/v1/audio/speech", json=body(i)).content for i in range(2)]
    results: list = [None] * 8

    def call(i: int) -> None:
        r = server.http.post("/v1/audio/speech", json=body(i))
        results[i] = (r.status_code, r.content)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [r and r[0] for r in results] == [200] * 8, results
    assert all(len(alone[i % 2]) > 2 * PCM_RATE and r[1] == alone[i % 2] for i, r in enumerate(results))


def test_binds_127_0_0_1_by_default(server):
    """The fixture passes no --host: the listening socket is the loopback address only."""
    tcp = Path("/proc/net/tcp")
    if not tcp.exists():
        pytest.skip("needs Linux's /proc/net/tcp")
    listening = [
        line.split()[1] for line in tcp.read_text().splitlines()[1:] if line.split()[3] == "0A"
    ]  # local_address of sockets in state LISTEN, as hex ip:port
    mine = [a for a in listening if int(a.split(":")[1], 16) == server.port]
    assert mine == [f"0100007F:{server.port:04X}"], mine
    assert f"Uvicorn running on http://127.0.0.1:{server.port}" in server.log()


def test_full_queue_is_429_and_a_client_that_leaves_frees_its_worker(tiny_release, tmp_path):
    voices = tmp_path / "voices"
    VoiceStore(voices, make_tiny_tts()).add("lj", str(CLIP), CLIP_TEXT)
    long_text = " ".join(f"This is sentence number {i} of a long text." for i in range(40))
    args = ["--checkpoint", str(tiny_release), "--voices", str(voices), "--workers", "1", "--max-queue", "1"]
    with ServerProcess(args) as srv, httpx.Client(base_url=srv.url, timeout=120) as http:
        health = lambda: http.get("/health").json()  # noqa: E731
        body = speech_body(input=long_text, steps=2)
        with http.stream("POST", "/v1/audio/speech", json=body) as a:
            assert a.status_code == 200
            a_bytes = a.iter_raw()  # (kept: a dropped iterator closes the response)
            next(a_bytes)  # a runs
            with pytest.raises(httpx.ReadTimeout):  # d waits in the queue, then gives up ...
                http.post("/v1/audio/speech", json=body, timeout=1.5)
            wait_for(lambda: health()["queued"] == 0, what="d's place freed")  # ... and its place is free
            b_started, b_stop, b_status = threading.Event(), threading.Event(), []

            def queued_b():
                with httpx.Client(base_url=srv.url, timeout=120) as h2:
                    with h2.stream("POST", "/v1/audio/speech", json=body) as b:
                        b_status.append(b.status_code)
                        b_bytes = b.iter_raw()
                        next(b_bytes)
                        b_started.set()
                        b_stop.wait(60)

            tb = threading.Thread(target=queued_b)
            tb.start()
            wait_for(lambda: health()["queued"] == 1, what="b queued")
            err = assert_error(http.post("/v1/audio/speech", json=speech_body()), 429)
            assert err["code"] == "queue_full"
            with pytest.raises(openai.RateLimitError):
                openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0).audio.speech.create(
                    model="tts-1", voice="lj", input="Hi."
                )
        # a left mid-stream: its worker stops long before the 40 sentences are done, and b gets it
        assert b_started.wait(30), srv.log()
        assert b_status == [200] and health()["busy"] == 1 and health()["queued"] == 0
        b_stop.set()
        tb.join(30)
        wait_for(lambda: health()["busy"] == 0, timeout=30, what="b's worker freed")
        ok = http.post("/v1/audio/speech", json=speech_body())
        assert ok.status_code == 200


def test_restart_keeps_voices_and_the_key_can_come_from_the_environment(tiny_release, tmp_path):
    args = ["--checkpoint", str(tiny_release), "--voices", str(tmp_path / "voices")]
    with ServerProcess(args) as srv:
        r = httpx.post(
            srv.url + "/v1/voices",
            data={"name": "keep", "transcript": CLIP_TEXT},
            files={"audio": ("lj.wav", CLIP.read_bytes(), "audio/wav")},
            timeout=60,
        )
        assert r.status_code == 201
        first = httpx.post(srv.url + "/v1/audio/speech", json=speech_body(voice="keep"), timeout=60).content
    with ServerProcess(args, env={"LATENTLM_API_KEY": "from-env"}) as srv:  # restarted, now with a key
        assert_error(httpx.get(srv.url + "/v1/voices", timeout=30), 401)
        auth = {"Authorization": "Bearer from-env"}
        voices = httpx.get(srv.url + "/v1/voices", headers=auth, timeout=30).json()["data"]
        assert [v["name"] for v in voices] == ["keep"] and voices[0]["transcript"] == r.json()["transcript"]
        again = httpx.post(
            srv.url + "/v1/audio/speech", json=speech_body(voice="keep"), headers=auth, timeout=60
        ).content
        assert again == first  # the same prompt, transcript and seed: the same audio


@pytest.mark.slow
def test_cloned_voice_says_the_words(tmp_path):
    """tts_demo behind the server: a voice registered from a real clip without its transcript (the server's
    offline Whisper writes it), then the openai client's streamed speech, heard by offline Whisper."""
    from evaluation.asr import build_asr

    release = REPO / "checkpoints" / "tts_demo"
    args = ["--checkpoint", str(release), "--voices", str(tmp_path / "voices")]
    with ServerProcess(args) as srv:
        r = httpx.post(
            srv.url + "/v1/voices",
            data={"name": "arctic"},
            files={"audio": ("arctic.wav", (EXAMPLES / "arctic_aew_a0003.wav").read_bytes(), "audio/wav")},
            timeout=300,
        )
        assert r.status_code == 201, r.text
        voice = r.json()
        assert voice["transcript_source"] == "asr" and "evening" in voice["transcript"].lower(), voice
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=300)
        text = "The weather is lovely today, so we will take a long walk by the river."
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="arctic", input=text, response_format="wav", extra_body={"seed": 0}
        ) as res:
            data = b"".join(res.iter_bytes())
    audio, sr = read_audio(data)
    seconds = len(audio) / sr
    assert sr == SR and 2.0 < seconds < 10.0, seconds
    heard = build_asr("whisper-base").transcribe([audio], sample_rate=sr)[0].lower()
    words = {"weather", "lovely", "today", "long", "walk", "river"}
    assert len(words & set(heard.replace(",", " ").replace(".", " ").split())) >= 3, heard  # seeds 0-3: 5-6
