"""ELLA-V script forcing: the constraint ``latentlm.decoding.iterate`` applies inside a speech span.

Dimension legend: B rows, S script tokens (the longest row's), V vocabulary.

    rest = interleaved_script(lm, scripts)                     # tts/layout.py: what each row still has to say
    c = ScriptConstraint(rest, vocab=lm.layout.size, uncond_token=lm.layout.null, max_run=runs, min_run=runs)
    lm.generate_stream(prefix, constraint=c, ...)

Per row, ``script`` is the discrete tokens (interleaved phonemes, tts/layout.py) the open span must emit in this
order between its latents. The next one competes with ``<lat>``; the span may end only once the script is
spent (or the span's cap is reached). Unconditional (guidance) rows read ``uncond_token`` in a script token's
place (None: the token itself).
``max_run`` (one int, or per row one limit per script token plus one for after the last): after this many
latents since the last script token the next one is forced (after the last: the span's end). ``min_run`` (same
shapes): before this many latents the next script token (after the last: the span's end) is not allowed;
min == max forces given durations (tts.duration_predictor). The span cap wins over both. ``bias`` is added to the
next script token's logit (> 0: move on sooner).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tts.phone_hmm import PAUSES as PAUSE_SYMBOLS


def run_limits(symbols: Sequence[str], lm_timing, items_per_second: float) -> list[int]:
    """LM-head timing (``TTSConfig.lm_timing``): the items each symbol of a script may take before the next is
    forced (one per symbol; the first symbol sits in the prefix, the last one is followed by the end): a phone
    ``max_phone_seconds``, a word gap ``max_gap_seconds``, punctuation (and the space of a ", " / ". ", and the
    trailing silence after the last symbol) ``max_pause_seconds``."""
    lt = lm_timing
    phone, gap, pause = (
        max(1, round(x * items_per_second))
        for x in (lt.max_phone_seconds, lt.max_gap_seconds, lt.max_pause_seconds)
    )
    out = []
    for k, s in enumerate(symbols):
        if k == len(symbols) - 1 or (s in PAUSE_SYMBOLS and s != " "):
            out.append(pause)  # punctuation, and the trailing silence after the last symbol
        elif s == " ":  # a word gap, or the pause of a ", " / ". " (the space holds the unit's frames)
            out.append(pause if k and symbols[k - 1] in PAUSE_SYMBOLS else gap)
        else:
            out.append(phone)
    return out


def _script_tensor(script: Sequence, b: int, vocab: int, dev) -> Tensor:
    """Per-row script token lists -> [B, S] long, right-padded with -1."""
    rows = [torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in script]
    if any(r.numel() and (r.min() < 0 or r.max() >= vocab) for r in rows):
        raise ValueError(f"script token ids must be in [0, {vocab})")
    out = torch.full((b, max((r.numel() for r in rows), default=0)), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out.to(dev)


def _run_limits(run_limit, scr: Tensor, name: str, fill: int) -> Tensor | None:
    """``max_run`` / ``min_run`` -> [B, S + 1] long (limit while saying script token s; the last column: after
    the last token), or None. ``fill``: the value past a shorter row's last column."""
    if run_limit is None or scr.shape[1] == 0:
        return None
    b, S = scr.shape
    if isinstance(run_limit, int):
        return torch.full((b, S + 1), run_limit, dtype=torch.long, device=scr.device)
    if len(run_limit) != b:
        raise ValueError(f"{name}: one list per row ({b}), got {len(run_limit)}")
    out = torch.full((b, S + 1), fill, dtype=torch.long)
    for r, lim in enumerate(run_limit):
        n = int((scr[r] >= 0).sum())
        if len(lim) != n + 1:
            raise ValueError(f"{name} row {r}: {n} script tokens need {n + 1} limits, got {len(lim)}")
        out[r, : n + 1] = torch.as_tensor(list(lim), dtype=torch.long)
    return out.to(scr.device)


class ScriptConstraint:
    """The script of every row, with its position and run counters (the ``latentlm.decoding`` constraint
    protocol: ``restrict``, ``owns``, ``advance``, ``uncond_token``, ``preference``)."""

    def __init__(
        self,
        script: Sequence[Sequence[int] | Tensor],
        vocab: int,
        uncond_token: int | None = None,
        max_run: int | Sequence[Sequence[int]] | None = None,
        min_run: int | Sequence[Sequence[int]] | None = None,
        bias: float = 0.0,
        device: torch.device | str = "cpu",
    ):
        b = len(script)
        self.rows = b
        self.uncond_token, self.preference = uncond_token, float(bias)
        self.scr = _script_tensor(script, b, vocab, device)  # [B, S], -1 after a row's last
        self.pos = torch.zeros(b, dtype=torch.long, device=device)  # [B] the next script token to emit
        self.run = torch.zeros(b, dtype=torch.long, device=device)  # [B] latents since the last script token
        self.limits = _run_limits(max_run, self.scr, "max_run", fill=1 << 30)  # [B, S + 1] or None
        self.floors = _run_limits(min_run, self.scr, "min_run", fill=0)  # [B, S + 1] or None
        if self.limits is not None and self.floors is not None and bool((self.floors > self.limits).any()):
            raise ValueError("min_run must not exceed max_run")

    def forced_plan(self, lat: int, end: Sequence[int]) -> list[list[int]] | None:
        """When every row's durations are given (``min_run == max_run``) and nothing is said yet, each row's
        tokens are known before decoding: ``lat`` x run_0, script token 0, ``lat`` x run_1, ..., ``lat`` x
        run_S, ``end[row]`` (what ``restrict`` would allow alone at each step). Else None (the LM head
        decides). ``latentlm.decoding`` follows such a plan without asking the constraint again (its state is
        then left as it was)."""
        if self.limits is None or self.floors is None or bool(self.pos.any()) or bool(self.run.any()):
            return None
        out = []
        for r in range(self.rows):
            script = self.scr[r][self.scr[r] >= 0].tolist()
            runs = self.limits[r, : len(script) + 1]
            if not torch.equal(runs, self.floors[r, : len(script) + 1]):
                return None
            row: list[int] = []
            for n, t in zip(runs.tolist(), [*script, int(end[r])]):
                row += [lat] * n + [t]
            out.append(row)
        return out

    def next_token(self) -> Tensor:
        """[B] the script token each row says next, -1 when spent (or the script is empty)."""
        if self.scr.shape[1] == 0:
            return torch.full_like(self.pos, -1)
        S = self.scr.shape[1]
        tok = self.scr.gather(1, self.pos.clamp(max=S - 1)[:, None])[:, 0]
        return tok.masked_fill(self.pos >= S, -1)

    def restrict(self, span: Tensor, in_span: Tensor, full_span: Tensor, end_tok: Tensor, lat: int) -> Tensor:
        """Narrow ``span`` (Bool[B, V], what the span grammar allows inside an open span; rows outside a span are
        ignored) in place. in_span / full_span [B] bool (full: at the span's cap), end_tok [B] the open span's
        end token, lat the ``<lat>`` id. -> preferred [B]: the token that gets ``preference`` added, -1 none."""
        nxt = self.next_token()
        if self.scr.shape[1] == 0:
            return nxt
        pending = in_span & (nxt >= 0)
        hold = pending & ~full_span  # the script is not spent: no end token yet
        span[hold, end_tok[hold]] = False
        rows_h = hold.nonzero().squeeze(-1)
        span[rows_h, nxt[rows_h]] = True
        if self.limits is not None:
            over = in_span & (self.run >= self.limits.gather(1, self.pos[:, None])[:, 0])  # [B]
            span[over & hold, lat] = False  # say the next symbol ...
            done_over = over & ~pending  # ... or, after the last one, end the span
            span[done_over, lat] = False
            span[done_over, end_tok[done_over]] = True
        if self.floors is not None:  # too early to move on: only latents (the cap still ends the span)
            under = in_span & ~full_span & (self.run < self.floors.gather(1, self.pos[:, None])[:, 0])  # [B]
            span[under] = False
            span[under, lat] = True
        return nxt.masked_fill(~hold, -1)

    def owns(self, tok: Tensor) -> Tensor:
        """Bool[B]: ``tok`` [B] is the row's next script token."""
        nxt = self.next_token()
        return (tok == nxt) & (nxt >= 0)

    def advance(self, said: Tensor, is_lat: Tensor) -> None:
        """After a step: ``said`` [B] rows that emitted their next script token, ``is_lat`` [B] rows that emitted
        a latent."""
        self.pos = self.pos + said
        self.run = torch.where(said, torch.zeros_like(self.run), self.run + is_lat)
