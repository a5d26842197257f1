"""One utterance from the command line (calls only the public TTS API).

    python -m tts.synthesize --checkpoint checkpoints/tts_demo --text "Hello there." --prompt prompt.wav \
        [--prompt-text "what the prompt says"] --out out.wav [--steps 10 --cfg CFG --temperature T --seed 0]

Without --prompt-text the prompt is transcribed by the offline Whisper-base model.
"""

from __future__ import annotations

import argparse
import json
import sys

import soundfile as sf
import torch

from tts.model import TTS
from tts.options import SynthesisOptions, TTSInputError, add_runtime_arguments, runtime_kwargs
from tts.outputs import check_out_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Zero-shot TTS: speak TEXT in the voice of PROMPT.")
    ap.add_argument("--checkpoint", required=True, help="TTS release directory")
    ap.add_argument("--text", required=True)
    ap.add_argument("--prompt", required=True, help="prompt audio file (any rate, mono or stereo, 1-30 s)")
    ap.add_argument("--prompt-text", default=None, help="transcript of the prompt (default: Whisper-base)")
    ap.add_argument("--out", required=True, help="output file: .wav, .flac or .ogg")
    ap.add_argument("--steps", type=int, default=10, help="DPM-Solver++ steps per frame")
    ap.add_argument(
        "--cfg",
        type=float,
        default=None,
        help="classifier-free guidance scale (1 = off; default: the release's)",
    )
    ap.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="diffusion noise scale (default: the release's temperature)",
    )
    ap.add_argument("--seed", type=int, default=0)
    add_runtime_arguments(ap)
    ap.add_argument(
        "--head",
        choices=["reference", "one_step"],
        default=None,
        help="diffusion head: reference (--steps evaluations) or one_step (distilled; default: the release's)",
    )
    ap.add_argument("--max-seconds", type=float, default=None, help="cap per sentence")
    ap.add_argument(
        "--no-bridge",
        dest="bridge",
        action="store_false",
        help="decode every frame from the trunk, without the release's step bridge (latentlm/bridge.py)",
    )
    ap.add_argument(
        "--takes",
        type=int,
        default=1,
        help="decode each sentence this many times and keep the take the release's aligner finds most likely (1-16)",
    )
    ap.add_argument("--speed", type=float, default=1.0, help="0.5-2 (releases timed by a duration predictor)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:  # settings and --out are checked before the model is loaded
        options = SynthesisOptions.from_mapping(vars(args))
        out = check_out_file(args.out)
        tts = TTS.from_pretrained(
            args.checkpoint, device=args.device, **runtime_kwargs(args)
        )
        res = tts.synthesize(args.text, args.prompt, prompt_text=args.prompt_text, options=options)
    except (TTSInputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sf.write(str(out), res.audio, res.sample_rate, subtype="PCM_16" if out.suffix.lower() == ".wav" else None)
    info = {k: res.info[k] for k in ("frames", "stop", "rtf", "takes") if k in res.info}
    print(f"wrote {args.out}: {res.duration:.2f} s, prompt text {res.prompt_text!r}, {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
