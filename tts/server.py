"""HTTP speech API for programs: OpenAI's ``/v1/audio/speech`` with cloned voices, over the one synthesis API.

    python -m tts.server --checkpoint checkpoints/tts_demo [--host 127.0.0.1] [--port 8000] [--voices voices]
                         [--api-key KEY | env LATENTLM_API_KEY] [--workers 1] [--max-queue 8]

| route | what |
|---|---|
| ``GET /v1/models`` | the loaded release (OpenAI's model list) |
| ``GET /v1/voices``, ``GET /v1/voices/{name}`` | saved voices |
| ``POST /v1/voices`` | multipart ``name``, ``audio`` (a clip), optional ``transcript`` (else offline Whisper) -> 201 |
| ``DELETE /v1/voices/{name}`` | forget a voice |
| ``POST /v1/audio/speech`` | OpenAI's body (model, input, voice, response_format, speed) + ``seed``, ``steps``, ``cfg``, ``head``; the audio is sent while it is generated (chunked) |
| ``GET /health`` | liveness and the pool's load (no key needed) |

The app is built by ``build_app(tts, cfg, voices)``; importing this file loads nothing. Synthesis is
``TTS.stream`` (the checks of text, prompt and options are the API's: ``SynthesisOptions``, ``TTS.load_prompt``);
voices are ``tts.voices.VoiceStore``; the worker pool and its queue are ``tts.job_pool.JobPool``; response formats
are ``tts.audio_formats``. Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
See docs/SERVER.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from tts.audio_formats import MEDIA_TYPES, FormatError, check_format, encode_stream, output_rate
from tts.job_pool import JobPool, QueueFull
from tts.model import TTSInputError
from tts.options import SynthesisOptions, add_runtime_arguments, runtime_kwargs
from tts.voices import VoiceExists, VoiceInputError, VoiceNotFound, VoiceStore

log = logging.getLogger("latentlm.server")
API_KEY_ENV = "LATENTLM_API_KEY"
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # accepted as names of the loaded model
OPTION_KEYS = ("speed", "seed", "steps", "cfg", "head")  # request fields that go to SynthesisOptions
SHUTDOWN_GRACE_S = 5  # seconds open streams get to finish when the server is stopped


@dataclass
class ServerConfig:
    """Limits and settings of the server (the CLI's flags)."""

    model_id: str = "latentlm-tts"  # the id /v1/models lists (the CLI uses the release folder's name)
    api_key: str | None = None  # when set, every /v1 request needs "Authorization: Bearer <key>"
    workers: int = 1  # synthesis jobs at once, sharing the one loaded model
    max_queue: int = 8  # jobs waiting beyond the busy workers; more get 429
    max_input_chars: int = 4096  # OpenAI's limit on ``input``
    max_upload_bytes: int = 10 * 1024 * 1024  # any request body (voice uploads); more get 413
    default_format: str | None = None  # None: mp3 (OpenAI's default) where ffmpeg exists, else wav


class APIError(Exception):
    """An error answer in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type


def error_response(e: APIError) -> JSONResponse:
    body = {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}}
    headers = {"Retry-After": "1"} if e.status == 429 else None
    return JSONResponse(body, status_code=e.status, headers=headers)


def _option_param(message: str) -> str | None:
    """The request field a SynthesisOptions / TTS error names first (its messages start with it)."""
    first = message.split(" ", 1)[0]
    return first if first in OPTION_KEYS else None


class SpeechRequest(BaseModel):
    """OpenAI's speech body; ``instructions`` is accepted and ignored (the voice is the prompt's)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    input: str
    voice: str | dict[str, str]  # a saved voice's name (or OpenAI's {"id": name})
    response_format: str | None = None
    speed: float | None = None
    instructions: str | None = None
    stream_format: Literal["audio"] | None = None
    seed: int | None = None  # extensions
    steps: int | None = None
    cfg: float | None = None
    head: Literal["reference", "one_step"] | None = None


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 (by its Content-Length at once, or
    while it is read when it has none)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = APIError(
            413,
            f"request body is larger than the server's limit of {self.limit} bytes",
            code="payload_too_large",
        )
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await error_response(too_big)(scope, receive, send)
        seen, exceeded, started = 0, False, False

        async def counted():  # the body as the app reads it; past the limit, the client "left"
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                exceeded = True
                return {"type": "http.disconnect"}
            return message

        async def guarded(message):  # once past the limit, the app's own answer is replaced by the 413
            nonlocal started
            if exceeded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await error_response(too_big)(scope, receive, send)


class _ClientGone(Exception):
    pass


async def _first_item(job, request: Request) -> Any:
    """The job's first item; if the client leaves while the job waits or starts, the job is cancelled."""
    get = asyncio.ensure_future(job.next())
    while True:
        done, _ = await asyncio.wait({get}, timeout=0.25)
        if done:
            return get.result()
        if await request.is_disconnected():
            job.cancel()
            get.cancel()
            raise _ClientGone


def build_app(tts, cfg: ServerConfig | None = None, voices: VoiceStore | None = None) -> FastAPI:
    """The FastAPI app over a loaded ``tts.model.TTS``; ``voices`` defaults to a store in ./voices."""
    cfg = cfg or ServerConfig()
    voices = voices if voices is not None else VoiceStore("voices", tts)
    pool = JobPool(cfg.workers, cfg.max_queue)
    default_format = cfg.default_format or ("mp3" if shutil.which("ffmpeg") else "wav")
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        yield
        pool.shutdown()

    app = FastAPI(title="LatentLM speech API", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.pool, app.state.voices, app.state.config = pool, voices, cfg
    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        err = (e.errors() or [{}])[0]
        loc = [x for x in err.get("loc", ()) if isinstance(x, str) and x not in ("body", "query", "path")]
        param = loc[0] if loc else None
        msg = err.get("msg", "invalid request")
        if err.get("type") == "json_invalid":
            param, msg = None, "the body is not valid JSON"
        text = f"{param}: {msg}" if param else f"invalid request body: {msg}"
        return error_response(APIError(400, text, param, "invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return error_response(APIError(e.status_code, str(e.detail), code=code))

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):
        log.exception("request %s failed", request.url.path)
        return error_response(APIError(500, f"internal error: {type(e).__name__}", type="server_error"))

    def authorize(request: Request) -> None:
        if not cfg.api_key:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), cfg.api_key.encode()):
            raise APIError(
                401, "missing or wrong API key (send 'Authorization: Bearer KEY')", code="invalid_api_key"
            )

    v1 = [Depends(authorize)]

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": cfg.model_id, **pool.stats()}

    @app.get("/v1/models", dependencies=v1)
    async def models():
        card = {"id": cfg.model_id, "object": "model", "created": created, "owned_by": "latentlm"}
        return {"object": "list", "data": [card]}

    @app.get("/v1/voices", dependencies=v1)
    async def list_voices():
        return {"object": "list", "data": [v.to_json() for v in voices.list()]}

    @app.get("/v1/voices/{name}", dependencies=v1)
    async def get_voice(name: str):
        try:
            return voices.get(name).to_json()
        except VoiceNotFound as e:
            raise APIError(404, str(e), "name", "voice_not_found") from None

    @app.delete("/v1/voices/{name}", dependencies=v1)
    async def delete_voice(name: str):
        try:
            voices.delete(name)
        except VoiceNotFound as e:
            raise APIError(404, str(e), "name", "voice_not_found") from None
        return {"id": name, "object": "voice", "deleted": True}

    @app.post("/v1/voices", status_code=201, dependencies=v1)
    async def add_voice(
        name: str = Form(...), audio: UploadFile = File(...), transcript: str | None = Form(None)
    ):
        suffix = Path(audio.filename or "").suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ".bin"
        with tempfile.TemporaryDirectory(prefix="voice-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            with open(path, "wb") as f:
                while data := await audio.read(1 << 20):
                    f.write(data)
            try:
                voice = await pool.call(lambda: voices.add(name, path, transcript))
            except QueueFull as e:
                raise APIError(429, str(e), code="queue_full", type="rate_limit_error") from None
            except VoiceExists as e:
                raise APIError(409, str(e), "name", "voice_exists") from None
            except VoiceInputError as e:  # name the upload, not its temporary copy
                message = str(e).replace(str(path), audio.filename or "the upload")
                raise APIError(400, message, e.param, "invalid_value") from None
        return voice.to_json()

    @app.post("/v1/audio/speech", dependencies=v1)
    async def speech(req: SpeechRequest, request: Request):
        if req.model not in (cfg.model_id, *OPENAI_MODELS):
            raise APIError(
                404,
                f"model {req.model!r} is not served here; GET /v1/models lists it",
                "model",
                "model_not_found",
            )
        if not req.input.strip():
            raise APIError(400, "input is empty: nothing to say", "input", "invalid_value")
        if len(req.input) > cfg.max_input_chars:
            raise APIError(
                400,
                f"input has {len(req.input)} characters; the limit is {cfg.max_input_chars}",
                "input",
                "string_too_long",
            )
        fmt = req.response_format or default_format
        try:
            check_format(fmt)
        except FormatError as e:
            raise APIError(400, str(e), "response_format", "unsupported_format") from None
        name = req.voice.get("id", "") if isinstance(req.voice, dict) else req.voice
        try:
            voice = voices.get(name)
            prompt = voices.prompt(name)
        except VoiceNotFound as e:
            raise APIError(404, str(e), "voice", "voice_not_found") from None
        try:
            options = SynthesisOptions.from_mapping(
                {k: getattr(req, k) for k in OPTION_KEYS if getattr(req, k) is not None}
            )
        except TTSInputError as e:
            raise APIError(400, str(e), _option_param(str(e)), "invalid_value") from None

        def produce():
            chunks = tts.stream(req.input, prompt, prompt_text=voice.transcript, options=options)
            return encode_stream(chunks, fmt, tts.sample_rate)

        try:
            job = pool.submit(produce)
        except QueueFull as e:
            raise APIError(429, str(e), code="queue_full", type="rate_limit_error") from None
        try:
            first = await _first_item(job, request)
        except StopAsyncIteration:
            first = b""
        except _ClientGone:  # the client left before the first audio
            return Response(status_code=499)
        except TTSInputError as e:
            raise APIError(400, str(e), _option_param(str(e)) or "input", "invalid_value") from None

        async def body():
            try:
                yield first
                async for data in job:
                    yield data
            except Exception:  # after the status line there is no way to report it but the log
                log.exception("synthesis failed mid-stream")
            finally:
                job.cancel()  # the client left, or the stream is done: free the worker

        headers = {"X-Sample-Rate": str(output_rate(fmt, tts.sample_rate)), "X-Response-Format": fmt}
        return StreamingResponse(body(), media_type=MEDIA_TYPES[fmt], headers=headers)

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts.server", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/tts_demo", help="TTS release folder")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--voices", default="voices", help="folder where saved voices are kept (created if missing)"
    )
    p.add_argument(
        "--api-key", default=None, help=f"require this bearer key (default: ${API_KEY_ENV}, if set)"
    )
    p.add_argument("--workers", type=int, default=1, help="synthesis jobs at once (one model, shared)")
    p.add_argument(
        "--max-queue", type=int, default=8, help="jobs waiting beyond the busy workers; more get 429"
    )
    p.add_argument("--max-input-chars", type=int, default=ServerConfig.max_input_chars)
    p.add_argument("--max-upload-mb", type=float, default=ServerConfig.max_upload_bytes / 2**20)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a busy 2-core machine)")
    add_runtime_arguments(p, fast=True)
    p.add_argument("--model-id", default=None, help="id in /v1/models (default: the release folder's name)")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    if a.workers < 1 or a.max_queue < 0 or a.max_input_chars < 1 or a.max_upload_mb <= 0:
        p.error("--workers and --max-input-chars must be >= 1, --max-queue >= 0, --max-upload-mb > 0")

    import torch
    import uvicorn

    from tts.model import TTS

    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(a.threads)
    try:
        tts = TTS.from_pretrained(a.checkpoint, **runtime_kwargs(a))
    except TTSInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = ServerConfig(
        model_id=a.model_id or Path(a.checkpoint).resolve().name,
        api_key=a.api_key or os.environ.get(API_KEY_ENV) or None,
        workers=a.workers,
        max_queue=a.max_queue,
        max_input_chars=a.max_input_chars,
        max_upload_bytes=int(a.max_upload_mb * 2**20),
    )
    app = build_app(tts, cfg, VoiceStore(a.voices, tts))
    log.info(
        "model %s, %d voice(s) in %s, key %s",
        cfg.model_id,
        len(app.state.voices.list()),
        a.voices,
        "required" if cfg.api_key else "not required",
    )
    if a.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_key:
        log.warning("listening on %s without an API key: anyone who can reach it can use it", a.host)
    # on SIGTERM / Ctrl-C, streams still open after this long are cut (their workers stop), so a restart never
    # waits for a long text to be read to the end
    uvicorn.run(
        app,
        host=a.host,
        port=a.port,
        log_level=a.log_level.lower(),
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
