"""Synthesis options: the one place where the decoding settings of every front end are checked.

    opts = SynthesisOptions(steps=10, cfg=None, temperature=None, seed=0, max_seconds=None, speed=1.0)
    tts.synthesize(text, prompt, options=opts)        # or the same settings as keyword arguments
    SynthesisOptions.from_mapping({"seed": "3", "speed": 0.8})   # a job row / form: strings are parsed

Modelled on whisper's ``DecodingOptions``: a frozen dataclass, checked when it is made, so a bad value (NaN, inf,
a seed torch cannot take, a string that is not a number) is refused before any work (no prompt is read, no
frame generated). ``TTS.synthesize`` / ``stream`` / ``synthesize_batch``, ``tts.synthesize``, ``tts.batch`` and
``app.py`` all build one. What depends on the release (speed needs predictor timing; ``cfg=None`` means the
release's ``cfg_scale``, ``temperature=None`` its ``temperature``) is checked by the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latentlm.one_step import OneStepConfig


class TTSInputError(ValueError):
    """Bad input to the TTS API (text, prompt audio, options, checkpoint); the message says what and why."""


BACKENDS = ("torch", "onnx")  # what runs the one-row decode steps (TTS.use_onnx)
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # speed=...: predicted durations / speed (releases timed by a predictor)
MAX_STEPS = 1000  # DPM-Solver++ steps per frame (10 is the default; more than ~50 buys nothing)
MAX_SEED = 2**32 - 1  # seeds are 0 .. 2**32 - 1 (numpy's range; every sentence's stream is seeded from it)
MAX_CFG = 100.0  # classifier-free guidance scale (1 = off; speech uses 1.3-3)
MAX_TEMPERATURE = 10.0  # diffusion noise scale (1 = the trained distribution)
HEADS = ("reference", "one_step")  # the reference diffusion head (steps x 2 rows) or a distilled one-step head
MAX_TAKES = 16  # takes per sentence (best of N, judged by the release's phoneme aligner)


def _number(name: str, value: Any, lo: float, hi: float, hint: str) -> float:
    """A finite float in [lo, hi] (bools and non-numbers refused), else a TTSInputError naming ``name``."""
    if isinstance(value, bool):
        raise TTSInputError(f"{name} must be a number ({hint}), got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TTSInputError(f"{name} must be a number ({hint}), got {value!r}") from None
    if not math.isfinite(x) or not lo <= x <= hi:
        raise TTSInputError(f"{name} must be a finite number in [{lo:g}, {hi:g}] ({hint}), got {value!r}")
    return x


def _integer(name: str, value: Any, lo: int, hi: int, hint: str) -> int:
    """An integer in [lo, hi]: ints, integral floats (3.0) and digit strings ("3"); else a TTSInputError."""
    x = value
    if isinstance(value, str):
        try:
            x = int(value.strip())
        except ValueError:
            x = None
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        x = int(value)
    if isinstance(x, bool) or not isinstance(x, int) and not hasattr(x, "__index__"):
        raise TTSInputError(f"{name} must be a whole number in [{lo}, {hi}] ({hint}), got {value!r}")
    x = int(x)
    if not lo <= x <= hi:
        raise TTSInputError(f"{name} must be in [{lo}, {hi}] ({hint}), got {value!r}")
    return x


def _flag(name: str, value: Any) -> bool:
    """A yes/no: bools, 0 / 1 and the strings true/false, yes/no, 1/0 (any case); else a TTSInputError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise TTSInputError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class SynthesisOptions:
    steps: int = 10  # DPM-Solver++ steps per latent frame
    cfg: float | None = None  # classifier-free guidance scale; None = the release's cfg_scale
    temperature: float | None = None  # diffusion noise scale; None = the release's temperature
    seed: int = 0  # every sentence draws its noise from (seed, sentence index)
    max_seconds: float | None = None  # cap per sentence (the release's max_output_seconds caps it too)
    speed: float = 1.0  # 0.5-2: predicted durations / speed (releases timed by a duration predictor)
    head: str | None = None  # "reference" | "one_step" (latentlm/one_step.py); None = the release's default
    takes: int = 1  # each sentence decoded this many times; the release's aligner (tts/phone_hmm.py) keeps one
    bridge: bool = True  # the release's step bridge (latentlm/bridge.py) where it has one: half the trunk calls

    def __post_init__(self) -> None:
        checked = {
            "steps": _integer("steps", self.steps, 1, MAX_STEPS, "diffusion steps per frame, e.g. 10"),
            "cfg": None
            if self.cfg is None
            else _number("cfg", self.cfg, 0.0, MAX_CFG, "guidance scale, 1 = off; or None for the release's"),
            "temperature": None
            if self.temperature is None
            else _number(
                "temperature",
                self.temperature,
                0.0,
                MAX_TEMPERATURE,
                "diffusion noise scale, e.g. 0.7; or None for the release's",
            ),
            "seed": _integer("seed", self.seed, 0, MAX_SEED, "any whole number in that range"),
            "max_seconds": None
            if self.max_seconds is None
            else _number("max_seconds", self.max_seconds, 0.0, math.inf, "seconds per sentence, or None"),
            "speed": _number("speed", self.speed, MIN_SPEED, MAX_SPEED, "1 = the prompt's tempo"),
            "takes": _integer("takes", self.takes, 1, MAX_TAKES, "takes per sentence, the best one kept; 1 = one"),
            "bridge": _flag("bridge", self.bridge),
        }
        if self.head is not None and self.head not in HEADS:
            raise TTSInputError(f"head must be one of {list(HEADS)} or None for the release's, got {self.head!r}")
        if checked["max_seconds"] == 0.0:
            raise TTSInputError(
                f"max_seconds must be positive (seconds per sentence), got {self.max_seconds!r}"
            )
        for k, v in checked.items():  # store the parsed values (numpy scalars, "3" -> plain numbers)
            object.__setattr__(self, k, v)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], defaults: SynthesisOptions | None = None
    ) -> SynthesisOptions:
        """The option keys of ``values`` (a job row, form values; other keys are ignored; a None leaves the
        default, except for cfg, temperature, max_seconds and head, where None is a value) over ``defaults``."""
        base = defaults or cls()
        kw = {f.name: getattr(base, f.name) for f in fields(cls)}
        for k in kw:
            if k in values and (values[k] is not None or k in ("cfg", "temperature", "max_seconds", "head")):
                kw[k] = values[k]
        return cls(**kw)

    @classmethod
    def merge(cls, options: SynthesisOptions | None, **settings: Any) -> SynthesisOptions:
        """``options`` as given, or the keyword ``settings`` of an API call (the ones a call leaves at their
        defaults are fine beside ``options``; a changed one is ambiguous and refused)."""
        if options is None:
            return cls(**settings)
        if not isinstance(options, cls):
            raise TTSInputError(f"options must be a SynthesisOptions, got {type(options).__name__}")
        default = cls()
        clash = sorted(k for k, v in settings.items() if v != getattr(default, k))
        if clash:
            raise TTSInputError(f"pass the settings either in options= or as keywords, not both: {clash}")
        return options

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, order=True)
class Decoding:
    """What a call decodes with, the release's defaults resolved (rows with equal ones share a batch)."""

    head: str  # "reference" | "one_step"
    steps: int  # head evaluations per latent (1 for the one-step head)
    cfg: float  # guidance scale (the one-step head's is distilled in: its decoder runs one trunk row)
    temperature: float
    bridge: bool = False  # every second latent of a planned row from the release's step bridge (one-step head)


def resolve_decoding(
    o: SynthesisOptions, cfg_scale: float, temperature: float, one_step: OneStepConfig | None,
    has_bridge: bool = False,
) -> Decoding:
    """A call's ``Decoding``: None is the release's (``one_step.default`` picks the head, ``cfg_scale``,
    ``temperature``); the step bridge serves the one-step head where the release has one and ``o.bridge``.
    The one-step head samples in one evaluation with the guidance it was distilled at: it
    refuses another cfg or a temperature above the range it was distilled on (``head="reference"`` takes them);
    ``steps`` is the reference head's."""
    head = o.head or ("one_step" if one_step is not None and one_step.default else "reference")
    cfg = float(cfg_scale if o.cfg is None else o.cfg)
    temp = float(temperature if o.temperature is None else o.temperature)
    if head == "reference":
        return Decoding(head, o.steps, cfg, temp)
    if one_step is None:
        raise TTSInputError('head "one_step": this release has no one-step head (one_step_head/); use "reference"')
    if o.cfg is not None and abs(cfg - one_step.cfg_scale) > 1e-6:
        raise TTSInputError(
            f"cfg {cfg:g}: the one-step head was distilled at cfg {one_step.cfg_scale:g}; "
            'use head="reference" for another guidance scale (or leave cfg at None)'
        )
    if temp > one_step.max_temperature + 1e-6:
        raise TTSInputError(
            f"temperature {temp:g}: the one-step head was distilled at temperatures up to "
            f'{one_step.max_temperature:g}; use head="reference" for a higher one'
        )
    return Decoding(head, 1, one_step.cfg_scale, temp, bridge=bool(o.bridge and has_bridge))


def add_runtime_arguments(ap, fast: bool = False) -> None:
    """The loading flags every front end shares (``TTS.from_pretrained``'s ``backend`` and ``quantize``) on an
    argparse parser; ``runtime_kwargs`` reads them back. ``fast`` (the long-lived front ends: the demo, the server):
    ONNX Runtime with int8 weights by default, the measured fastest path (docs/experiments/onnx-graphs.md), whose
    ~3 s of graph building at start a process serving many requests pays once."""
    ap.add_argument(
        "--quantize",
        choices=["int8", "none"],
        default=None,
        help="int8: the decode steps' linear layers in dynamic int8 (CPU; with --backend onnx, ONNX Runtime's: "
        "the fastest path, docs/TTS.md 'How fast'); none: float32. Default: "
        + ("int8 with --backend onnx, none with torch" if fast else "none"),
    )
    ap.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="onnx" if fast else "torch",
        help="onnx: one-row decode steps in ONNX Runtime (CPU; ~3 s more at start with int8; docs/TTS.md 'How "
        "fast'); torch: all in PyTorch",
    )
    ap.set_defaults(fast_runtime=fast)


def runtime_kwargs(args) -> dict:
    """``backend`` and ``quantize`` for ``TTS.from_pretrained`` from ``add_runtime_arguments``' flags."""
    q = args.quantize
    if q is None:  # the front end's default: int8 on the fast front ends' ONNX Runtime path
        q = "int8" if getattr(args, "fast_runtime", False) and args.backend == "onnx" else "none"
    return {"backend": args.backend, "quantize": None if q == "none" else q}