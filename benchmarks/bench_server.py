"""The HTTP speech server (tts/server.py) under load on this machine: requests/s and time to first byte for 1 and
4 concurrent clients.

    python -m benchmarks.bench_server [--checkpoint checkpoints/tts_demo] [--clients 1,4] [--requests 4]
                                      [--workers 1] [--threads 1] [--format wav]

Starts ``python -m tts.server`` in a subprocess (one model; ``--workers`` synthesis jobs at once, ``--threads``
torch threads), registers a voice from examples/ with its transcript, sends one warm-up request, then for each
client count C runs C threads that each send ``--requests`` speech requests back to back (streamed, read to the
end). Printed per C: requests/s, time to first byte (median and worst: from sending the request to the first
audio byte), seconds of audio per wall second, and the mean request time. Requests beyond the workers wait in the
server's queue, so with 1 worker the time to first byte of C clients includes the others' synthesis.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import httpx

from tests.helpers import ServerProcess

REPO = Path(__file__).resolve().parents[1]
PROMPT = REPO / "examples" / "lj_LJ001-0011.wav"
PROMPT_TEXT = "it is of the first importance that the letter used should be fine in form;"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A small boat drifted slowly across the quiet harbour at dawn.",
    "The weather is lovely today, so we will take a long walk.",
    "Please call me back when you have a moment.",
]
BYTES_PER_SECOND = {"wav": 32000, "pcm": 32000}  # 16-bit mono at 16 kHz (the demo release's rate)


def one_request(http: httpx.Client, text: str, fmt: str, seed: int) -> dict:
    body = {"model": "tts-1", "input": text, "voice": "bench", "response_format": fmt, "seed": seed}
    t0 = time.perf_counter()
    ttfb, size = None, 0
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.read().decode(errors='replace')}")
        rate = int(r.headers["x-sample-rate"]) * 2
        for data in r.iter_raw():
            if ttfb is None and data:
                ttfb = time.perf_counter() - t0
            size += len(data)
    seconds = (size - (44 if fmt == "wav" else 0)) / rate if fmt in BYTES_PER_SECOND else float("nan")
    return {"ttfb": ttfb, "total": time.perf_counter() - t0, "audio_s": seconds}


def run_clients(url: str, clients: int, requests: int, fmt: str) -> dict:
    results: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            for i in range(requests):
                try:
                    res = one_request(http, TEXTS[(c + i) % len(TEXTS)], fmt, seed=c * 100 + i)
                except Exception as e:  # reported below
                    with lock:
                        errors.append(str(e))
                    continue
                with lock:
                    results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfb = sorted(r["ttfb"] for r in results)
    return {
        "clients": clients,
        "ok": len(results),
        "errors": errors,
        "wall_s": wall,
        "rps": len(results) / wall,
        "ttfb_median": statistics.median(ttfb) if ttfb else float("nan"),
        "ttfb_max": ttfb[-1] if ttfb else float("nan"),
        "audio_per_s": sum(r["audio_s"] for r in results) / wall,
        "mean_request_s": statistics.mean(r["total"] for r in results) if results else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "tts_demo"))
    ap.add_argument("--clients", default="1,4", help="comma-separated client counts")
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--format", default="wav", choices=["wav", "pcm", "flac", "mp3", "opus"])
    a = ap.parse_args()
    import tempfile

    counts = [int(c) for c in a.clients.split(",")]
    with tempfile.TemporaryDirectory() as voices:
        args = ["--checkpoint", a.checkpoint, "--voices", voices, "--workers", str(a.workers)]
        args += ["--threads", str(a.threads), "--max-queue", str(max(counts) * 2), "--log-level", "warning"]
        with ServerProcess(args) as srv, httpx.Client(base_url=srv.url, timeout=600) as http:
            r = http.post(
                "/v1/voices",
                data={"name": "bench", "transcript": PROMPT_TEXT},
                files={"audio": (PROMPT.name, PROMPT.read_bytes(), "audio/wav")},
            )
            r.raise_for_status()
            one_request(http, TEXTS[0], a.format, seed=0)  # warm-up (first-call caches)
            print(
                f"server: {Path(a.checkpoint).name}, {a.workers} worker(s), {a.threads} torch thread(s), "
                f"format {a.format}, {a.requests} requests per client, one short sentence each"
            )
            print(
                "| clients | requests/s | TTFB median (s) | TTFB worst (s) | audio s per s | mean request (s) |"
            )
            print("|---|---|---|---|---|---|")
            for c in counts:
                s = run_clients(srv.url, c, a.requests, a.format)
                print(
                    f"| {c} | {s['rps']:.2f} | {s['ttfb_median']:.3f} | {s['ttfb_max']:.3f} | "
                    f"{s['audio_per_s']:.2f} | {s['mean_request_s']:.2f} |"
                )
                for e in s["errors"]:
                    print(f"  error: {e}")


if __name__ == "__main__":
    main()
