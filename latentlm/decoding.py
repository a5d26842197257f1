"""Interleaved decoding for LatentLM: LM-head sampling at discrete positions, diffusion at latent ones.

Dimension legend: B rows, N prefix positions, C width, Dmax widest latent dim.

At every step each unfinished row gets the hidden state of its last item, the LM head picks the next token, and
when that token is ``<lat>`` the open span's diffusion head samples the latent. The chosen item is embedded and fed
back through the trunk with the KV cache (one position per step for the whole batch; rows that finished feed
padding that nothing attends to). Rows of different prefix lengths decode together (right-padded prefill).

Grammar enforced by logit masks (the model is free everywhere else):
- inside an open span of modality m only ``<lat>`` or ``<eo_m>`` may follow; ``min_latents`` / ``max_latents`` /
  ``span_length`` bound the span (images use a fixed ``span_length``; speech a hard cap);
- outside a span ``<lat>`` and end tokens are impossible; ``<pad>``, ``<bos>`` and ``<null>`` are never generated;
- ``constraint`` (optional): an object that narrows what an open span may emit further (tts/script_constraint.py:
  ELLA-V script forcing of interleaved phonemes with their durations). Its protocol: ``restrict(span, in_span,
  full_span, end_tok, lat) -> preferred`` narrows the span's allowed tokens Bool[B, V] in place and names a token
  per row (-1 none) whose logit gets ``preference`` added; ``owns(tok) -> Bool[B]`` says which emitted tokens are
  its own; ``advance(said, is_lat)`` updates its state after each step; ``uncond_token`` (int or None) is what
  guidance rows read in place of its tokens.
Forced tokens: with greedy token decoding, a token that is the only one the grammar allows (a script token whose
durations are given, a span's end) needs no hidden state; items are fed lazily, all that are pending in one
trunk call when a row needs its hidden state, so predictor-timed speech makes one trunk call per latent instead
of one per item (the same items at the same positions: the output equals one call per item to float rounding;
``FUSE_FORCED_TOKENS = False`` turns it off). Plans: when the constraint knows every row's tokens before decoding
(``forced_plan``: given durations, as predictor-timed speech has), the loop follows that plan instead of asking
the grammar at every step: the same steps, trunk calls and draws without the per-step masks
(``PLAN_FORCED_SCRIPTS = False`` turns it off).
Classifier-free guidance: ``uncond`` is the same batch with its condition replaced (e.g. by ``<null>``); both run
side by side in one trunk batch and the diffusion heads combine them with scale ``cfg``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from latentlm import row_loop
from latentlm.sequence import Batch
from latentlm.transformer import KVCache

# feed tokens the grammar forces with the items around them (off: one call per item)
FUSE_FORCED_TOKENS = True
PLAN_FORCED_SCRIPTS = True  # follow a constraint's forced plan without the grammar (off: decide every step)


@dataclass
class Step:
    tokens: Tensor  # [B] layout ids emitted this step (<pad> for rows already finished)
    latents: Tensor  # [B, Dmax] sampled latents (normalised space) where tokens == <lat>, zeros elsewhere
    modality: Tensor  # [B] modality index of the latent, -1 where no latent was emitted
    finished: Tensor  # [B] bool, after this step
    truncated: Tensor  # [B] bool, rows stopped by max_new rather than a stop token


def concat_batches(a: Batch, b: Batch) -> Batch:
    """Stack two packed batches row-wise, right-padding the shorter one. -> [Ba + Bb, max(Na, Nb)]."""
    n = max(a.tokens.shape[1], b.tokens.shape[1])

    def padded(x: Batch) -> list[Tensor]:
        p = n - x.tokens.shape[1]
        return [
            torch.nn.functional.pad(x.tokens, (0, p)),
            torch.nn.functional.pad(x.latents, (0, 0, 0, p)),
            torch.nn.functional.pad(x.modality, (0, p), value=-1),
            torch.nn.functional.pad(x.valid, (0, p)),
            torch.nn.functional.pad(x.weight, (0, p)),
        ]

    return Batch(*(torch.cat(pair) for pair in zip(padded(a), padded(b))))


def _open_spans(model, batch: Batch) -> tuple[Tensor, Tensor]:
    """Per row: index of the open modality after the prefix (-1 if none) and latents emitted in that span."""
    lay = model.layout
    b = batch.tokens.shape[0]
    open_m = torch.full((b,), -1, dtype=torch.long)
    count = torch.zeros(b, dtype=torch.long)
    for r in range(b):
        toks = batch.tokens[r][batch.valid[r]].tolist()
        for t in toks:
            if t in lay.modality_of_begin:
                open_m[r] = lay.modalities.index(lay.modality_of_begin[t])
                count[r] = 0
            elif t in lay.modality_of_end:
                open_m[r] = -1
            elif t == lay.lat and open_m[r] >= 0:
                count[r] += 1
    return open_m, count


def _sample_token(logits: Tensor, temperature: float, top_k: int | None, generator) -> Tensor:
    """logits [B, V] (masked with -inf) -> [B]. temperature 0 = greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return torch.cat([torch.multinomial(p[None], 1, generator=g)[0] for p, g in zip(probs, generator)])


@torch.no_grad()
def iterate(
    model,
    prefix: Batch,
    *,
    max_new: int = 256,
    steps: int = 10,
    cfg: float = 1.0,
    uncond: Batch | None = None,
    temperature: float = 1.0,
    token_temperature: float = 1.0,
    top_k: int | None = None,
    min_latents: int | Sequence[int] = 0,
    max_latents: int | None = None,
    span_length: int | None = None,
    stop_tokens: Sequence[int] | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    solver: str = "dpm++2m",
    read_noise: float = 0.0,
    constraint=None,
    heads=None,
    bridge=None,
) -> Iterator[Step]:
    """Yield one ``Step`` per generated item until every row emitted a stop token or ``max_new`` items.

    generator: one for the batch, or one per row (then row r's draws depend only on ``generator[r]``, so a row
    decodes the same alone or in any batch). stop_tokens: default ``<eos>`` and every ``<eo_m>``. temperature: diffusion noise scale; token_temperature /
    top_k: LM-head sampling. cfg != 1 needs ``uncond`` (same rows, condition dropped). read_noise: std of Gaussian
    noise added to each sampled latent as the model READS it back (the yielded latents stay clean): the inference
    twin of training-time input noise, as Tacotron keeps its prenet dropout on at inference.
    constraint: see the module docstring (e.g. tts.script_constraint.ScriptConstraint; it holds per-row state:
    one object per call).
    heads: the diffusion heads to sample with, by modality (default ``model.heads``), e.g. a release's distilled
    one-step heads (latentlm/one_step.py: call with steps=1 and cfg=1, their single row carries the guidance).
    bridge: a ``latentlm.bridge.StepBridge`` for the modality it names: where the loop follows a plan (below)
    and decodes one row per sentence (cfg 1), every second latent of a row is sampled from the bridge's
    prediction of the trunk's state (``bridge_plan``), and the trunk reads it with the next one in one call."""
    if max_new <= 0:
        raise ValueError("max_new must be positive")
    if read_noise < 0:
        raise ValueError(f"read_noise must be >= 0, got {read_noise}")
    per_row = None if generator is None or isinstance(generator, torch.Generator) else list(generator)
    if per_row is not None and len(per_row) != prefix.tokens.shape[0]:
        raise ValueError(f"got {len(per_row)} generators for {prefix.tokens.shape[0]} rows")
    heads = model.heads if heads is None else heads
    use_cfg = cfg != 1.0
    if use_cfg and uncond is None:
        raise ValueError("cfg != 1 needs an unconditional prefix (uncond)")
    if use_cfg and uncond.tokens.shape[0] != prefix.tokens.shape[0]:
        raise ValueError("uncond must have the same number of rows as prefix")
    lay = model.layout
    dev = next(model.parameters()).device
    prefix = prefix.to(dev)
    b = prefix.tokens.shape[0]
    if constraint is not None and getattr(constraint, "rows", b) != b:
        raise ValueError(f"constraint: made for {constraint.rows} rows, the prefix has {b}")
    full = concat_batches(prefix, uncond.to(dev)) if use_cfg else prefix
    rows = full.tokens.shape[0]
    param = next(model.parameters())
    cache = KVCache.empty(model.cfg.trunk, rows, full.tokens.shape[1] + max_new, dev, param.dtype)
    hidden = model(full, cache=cache)  # [R, N, C]
    last = hidden[torch.arange(rows, device=dev), full.lengths - 1]  # [R, C]

    open_m, count = (t.to(dev) for t in _open_spans(model, prefix))
    # latents a span must hold before its end token is allowed (the prefix's own latents count): one or per row
    min_lat = torch.as_tensor(min_latents, dtype=torch.long, device=dev)
    if min_lat.dim() and min_lat.shape != (b,):
        raise ValueError(f"min_latents: one int or one per row ({b}), got shape {tuple(min_lat.shape)}")
    stops = set(stop_tokens) if stop_tokens is not None else {lay.eos, *lay.end.values()}
    ends = torch.tensor([lay.end[m] for m in lay.modalities], dtype=torch.long, device=dev)  # [n_modalities]
    dmax = prefix.latents.shape[-1]
    finished = torch.zeros(b, dtype=torch.bool, device=dev)
    # constants of the loop, made once: never-generated tokens as an additive -inf bias, blocked-outside-span
    # tokens, stop tokens, span cap, per-modality (index, name, latent dim)
    never = torch.tensor([lay.pad, lay.bos, lay.null], device=dev)
    blocked = torch.cat([torch.tensor([lay.lat], device=dev), ends])
    stop_ids = torch.tensor(sorted(stops), device=dev)
    cap = span_length if span_length is not None else max_latents
    mods = [(i, m, d) for i, (m, d) in enumerate(model.latent_dims.items())]
    begins = [(t, lay.modalities.index(m)) for m, t in lay.begin.items()]
    pad_tok = torch.full((b,), lay.pad, dtype=torch.long, device=dev)
    zero_weight = torch.zeros(rows, 1, device=dev)

    def grammar() -> tuple[Tensor, Tensor]:
        """The rows' state now -> (allowed Bool[B, V], preferred [B]: the token whose logit gets the
        constraint's preference, -1 none) by the rules of the module docstring."""
        allowed = torch.ones(b, lay.size, dtype=torch.bool, device=dev)
        allowed[:, never] = False
        in_span = open_m >= 0  # [B]
        preferred = torch.full((b,), -1, dtype=torch.long, device=dev)
        outside = ~in_span
        if outside.any():
            allowed[outside.nonzero()[:, :1], blocked] = False
        if in_span.any():  # inside a span: only <lat> or this span's end token
            end_tok = ends[open_m.clamp(min=0)]  # [B] (meaningful where in_span)
            span = torch.zeros_like(allowed)
            span[:, lay.lat] = True
            span[in_span, end_tok[in_span]] = True
            need_more = in_span & (count < min_lat)
            if need_more.any():
                span[need_more, end_tok[need_more]] = False
            full_span = in_span & (count >= cap) if cap is not None else torch.zeros_like(in_span)
            span[full_span, lay.lat] = False
            if span_length is not None:
                short = in_span & (count < span_length)
                span[short] = False
                span[short, lay.lat] = True
            if constraint is not None:
                preferred = constraint.restrict(span, in_span, full_span, end_tok, lay.lat)
            allowed[in_span] = span[in_span]
        return allowed, preferred

    # Items are fed to the trunk lazily: each step's item joins ``pending`` and the pending items go through the
    # trunk in one call when some row needs its hidden state (to choose a token with the LM head, or to sample a
    # latent). Under greedy token decoding a token the grammar allows alone (a script token with given
    # durations, a span's end) is known without the hidden state, so predictor-timed speech makes one trunk call
    # per latent instead of one per item; the items and their positions are the same, so is the output (to float
    # rounding). Sampled token decoding (token_temperature > 0) feeds every item at once, as it always did.
    fuse = FUSE_FORCED_TOKENS and token_temperature <= 0
    pending: list[list[Tensor]] = []  # per step not yet fed: tokens, latents, modality, valid ([R, ...] each)
    un_token = constraint.uncond_token if constraint is not None else None

    def feed() -> None:
        nonlocal last
        n = len(pending)
        tokens, latents, modality, valid = (torch.stack(x, 1) for x in zip(*pending))  # [R, n, ...]
        out = model(
            Batch(tokens, latents, modality, valid, weight=zero_weight[:, :1].expand(-1, n)), cache=cache
        )
        took = valid.any(1)  # [R] rows that fed something: their newest hidden state
        at_last_valid = valid.long().cumsum(1).argmax(1)  # [R]
        newest = out[torch.arange(rows, device=dev), at_last_valid]  # [R, C]
        last = torch.where(took[:, None], newest, last)
        pending.clear()

    def sample_latents(is_lat: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The heads' latents for the rows emitting ``<lat>`` -> (latents [B, Dmax], modality [B], -1 none).
        ``cond`` [B, C]: the states to sample from instead of ``last`` (a bridge's)."""
        lat_vals = torch.zeros(b, dmax, device=dev, dtype=param.dtype)
        lat_mod = torch.full((b,), -1, dtype=torch.long, device=dev)
        for i, m, d in mods:
            sel = is_lat & (open_m == i)
            if sel.any():
                idx = sel.nonzero().squeeze(-1)
                un = last[b:][idx] if use_cfg else None
                z = heads[m].sample(
                    (last if cond is None else cond)[idx],
                    steps=steps,
                    cfg=cfg,
                    uncond=un,
                    temperature=temperature,
                    generator=generator if per_row is None else [per_row[r] for r in idx.tolist()],
                    solver=solver,
                )  # [M, D]
                lat_vals[idx, :d] = z.to(lat_vals.dtype)
                lat_mod[idx] = i
        return lat_vals, lat_mod

    def read_back(lat_vals: Tensor, is_lat: Tensor) -> Tensor:
        """The latents as the trunk reads them: with ``read_noise``, noisy copies."""
        if read_noise <= 0 or not is_lat.any():
            return lat_vals
        fed = lat_vals.clone()
        for r in is_lat.nonzero().squeeze(-1).tolist():
            g = generator if per_row is None else per_row[r]
            n = torch.randn(dmax, generator=g, device=g.device if g is not None else dev)
            fed[r] += (read_noise * n).to(dev, fed.dtype)
        return fed

    plan = None
    if PLAN_FORCED_SCRIPTS and fuse and constraint is not None and span_length is None and cap is None:
        if bool((open_m >= 0).all()) and all(int(e) in stops for e in ends):
            plan = getattr(constraint, "forced_plan", lambda *a: None)(lay.lat, ends[open_m].tolist())
    if plan is not None:
        if bridge is not None and not use_cfg and bridge.cfg.modality in model.latent_dims:
            m_idx = list(model.latent_dims).index(bridge.cfg.modality)
            bridging = (bridge, m_idx, lambda: last, open_m.tolist())
        else:
            bridging = None
        fast = None
        m_name = next(iter(model.latent_dims), None)  # row_loop.covers a model of one modality only
        if row_loop.covers(
            model, heads, m_name, bridging[0] if bridging else None, cfg, steps, solver, read_noise, rows, generator
        ) and bool(cache.key_valid[0, : cache.length].all()) and int(open_m[0]) == 0:
            fast = (model, heads[m_name], temperature, generator, cache, last[0].float().numpy(), dmax)
        yield from _follow(
            plan, lay, max_new, un_token, use_cfg, dev, sample_latents, read_back, pending, feed, bridging, fast
        )
        return

    rules = grammar()  # the rules of the coming step (the state changes only in the bookkeeping below)
    for step in range(max_new):
        allowed, preferred = rules
        known = torch.zeros_like(finished)
        if fuse:
            only = allowed.to(torch.uint8).argmax(-1)  # [B] the first allowed token: the only one where known
            known = (allowed.sum(-1) == 1) & (only != lay.lat)
        need = ~finished & ~known  # rows that need their hidden state now
        if pending and bool(need.any()):
            feed()
        if bool(need.any()):
            logits = model.logits(last[:b]).float()  # [B, V]
            if constraint is not None and constraint.preference and bool((preferred >= 0).any()):
                rows_p = (preferred >= 0).nonzero().squeeze(-1)
                logits[rows_p, preferred[rows_p]] += constraint.preference
            logits = logits.masked_fill(~allowed, float("-inf"))
            tok = _sample_token(logits, token_temperature, top_k, generator)
            if fuse:
                tok = torch.where(known, only, tok)
        else:
            tok = only
        tok = torch.where(finished, pad_tok, tok)  # [B]

        is_lat = (tok == lay.lat) & ~finished
        lat_vals, lat_mod = sample_latents(is_lat)
        # span bookkeeping
        said = torch.zeros_like(finished)  # rows that emitted a token of the constraint's
        if constraint is not None:
            said = constraint.owns(tok) & ~finished & (open_m >= 0)
            constraint.advance(said, is_lat)
        count = count + is_lat  # [B] long
        for t, mi in begins:
            opened = tok == t
            open_m = open_m.masked_fill(opened, mi)
            count = count.masked_fill(opened, 0)
        open_m = open_m.masked_fill(torch.isin(tok, ends), -1)

        newly_done = torch.isin(tok, stop_ids) & ~finished
        emitted = ~finished  # rows that emitted an item this step (stop tokens included): fed back
        finished = finished | newly_done
        truncated = torch.zeros_like(finished)
        if step == max_new - 1:
            truncated = ~finished
            finished = torch.ones_like(finished)
        yield Step(
            tokens=tok, latents=lat_vals, modality=lat_mod, finished=finished.clone(), truncated=truncated
        )
        if finished.all():
            return
        column = [tok, read_back(lat_vals, is_lat), lat_mod, emitted]
        if use_cfg:  # the uncond rows feed the same item; the constraint's tokens read as its uncond_token
            un_tok = tok if un_token is None else tok.masked_fill(said, un_token)
            column = [torch.cat([x, y]) for x, y in zip(column, [un_tok, *column[1:]])]
        pending.append(column)
        rules = grammar()


def _follow(
    plan, lay, max_new, un_token, use_cfg, dev, sample_latents, read_back, pending, feed, bridging=None, fast=None
) -> Iterator[Step]:
    """``iterate`` along a plan (per row the token ids it will emit: ``ScriptConstraint.forced_plan``): the same
    steps, trunk calls and random draws as deciding each step by the grammar, without the grammar's per-step
    bookkeeping. ``bridging``: (StepBridge, its modality index, a function returning the rows' newest hidden
    states, each row's open modality index): the latents ``bridge_plan`` marks are sampled from the bridge's state,
    so the trunk is not called for them (the same random draws). ``fast``: (model, head, temperature, generator,
    cache, the prefix's last state [C], Dmax) when ``row_loop.covers`` the call: one row decoded by
    latentlm/row_loop.py, the same steps without the tensor bookkeeping. Dimension legend: B rows, T steps, C width,
    K token slots."""
    b, lengths = len(plan), [len(p) for p in plan]
    T = min(max(lengths), max_new)
    toks = torch.full((b, T), lay.pad, dtype=torch.long)  # [B, T], <pad> once a row has ended
    said = torch.zeros(b, T, dtype=torch.bool)  # [B, T] script tokens: guidance rows read un_token there
    for r, p in enumerate(plan):
        n = min(len(p), T)
        toks[r, :n] = torch.as_tensor(p[:n], dtype=torch.long)
        said[r, : min(len(p) - 1, T)] = toks[r, : min(len(p) - 1, T)] != lay.lat  # the last is the end token
    un_toks = toks.masked_fill(said, un_token) if un_token is not None else toks
    step = torch.arange(T)
    lens = torch.tensor(lengths)
    emitted = step[None] < lens[:, None]  # [B, T] rows that emit an item at each step
    done_after = step[None] >= lens[:, None] - 1  # [B, T] finished after each step
    is_lat = toks == lay.lat
    marks = [[False] * T for _ in plan]  # per row and step: its latent is sampled from the bridge's state
    if bridging is not None:
        from latentlm.bridge import bridge_plan

        bridge, m_idx, newest, open_rows = bridging
        k_max, empty = bridge.cfg.max_tokens, bridge.cfg.vocab
        row_slots = [[[empty] * k_max] * T for _ in plan]  # per row and step: the token slots the bridge reads
        for r, p in enumerate(plan):
            if int(open_rows[r]) != m_idx:  # a span of another modality: its latents come from the trunk
                continue
            mk, sl = bridge_plan(list(p[:T]), lay.lat, empty, k_max, bridge.cfg.chain)
            marks[r][: len(mk)] = mk
            row_slots[r][: len(sl)] = [x or [empty] * k_max for x in sl]
        slots = torch.tensor(row_slots, dtype=torch.long, device=dev)  # [B, T, K]
        src_h = src_z = None  # [B, C], [B, D]: each row's previous latent's state (the trunk's or the bridge's)
        # and its value as read
    bridged = torch.tensor(marks, dtype=torch.bool).reshape(b, T)  # [B, T]
    real = is_lat & ~bridged  # [B, T] latents sampled from the trunk's state
    # per step, as Python values (the loop reads them every step): the trunk is needed, something is bridged,
    # some row emits a latent
    need_trunk, any_bridged, any_lat = (x.any(0).tolist() for x in (real, bridged, is_lat))
    toks, un_toks, emitted, done_after, is_lat, bridged = (
        x.to(dev) for x in (toks, un_toks, emitted, done_after, is_lat, bridged)
    )

    def step_at(t: int, lat_vals: Tensor, lat_mod: Tensor) -> Step:
        """The ``Step`` of step t (rows end with their plan, or all at ``max_new``)."""
        finished, truncated = done_after[:, t].clone(), torch.zeros(b, dtype=torch.bool, device=dev)
        if t == max_new - 1:
            truncated, finished = ~finished, torch.ones_like(finished)
        return Step(tokens=toks[:, t], latents=lat_vals, modality=lat_mod, finished=finished, truncated=truncated)

    if fast is not None:  # one row, every network in ONNX Runtime: latentlm/row_loop.py
        model, head, temperature, generator, cache, first_hidden, dmax = fast

        no_lat, mod_tok, mod_lat = torch.zeros(1, dmax), torch.full((1,), -1), torch.zeros(1, dtype=torch.long)

        def make_step(t: int, z) -> Step:
            if z is None:
                return step_at(t, no_lat.clone(), mod_tok.clone())
            return step_at(t, torch.from_numpy(z[None].copy()), mod_lat.clone())  # one modality: D = Dmax

        yield from row_loop.row_loop(
            model, plan[0], head, bridging[0] if bridging is not None else None, marks[0],
            row_slots[0] if bridging is not None else None, temperature, generator, cache, first_hidden, T, make_step,
        )
        return
    no_latents = None  # (latents [B, Dmax], modality [B]) of a step without latents, made once
    for t in range(T):
        tok, lat_t = toks[:, t], is_lat[:, t]
        if need_trunk[t] and pending:
            feed()
        cond = None
        if any_bridged[t]:
            rows_b = bridged[:, t].nonzero().squeeze(-1)
            cond = newest().clone()
            d = bridge.cfg.latent_dim
            cond[rows_b] = bridge(src_h[rows_b], src_z[rows_b, :d], slots[rows_b, t]).to(cond.dtype)
        if any_lat[t]:
            lat_vals, lat_mod = sample_latents(lat_t, cond)
        else:
            if no_latents is None:
                no_latents = sample_latents(lat_t)
            lat_vals, lat_mod = (x.clone() for x in no_latents)
        st = step_at(t, lat_vals, lat_mod)
        yield st
        if st.finished.all():
            return
        column = [tok, read_back(lat_vals, lat_t), lat_mod, emitted[:, t]]
        if bridging is not None and any_lat[t]:
            lat_now = lat_t[:, None]  # [B, 1] rows that sampled a latent: the next bridged one starts from it
            h_now, z_now = (newest() if cond is None else cond), column[1]
            src_h = h_now.clone() if src_h is None else torch.where(lat_now, h_now, src_h)
            src_z = z_now.clone() if src_z is None else torch.where(lat_now, z_now, src_z)
        if use_cfg:
            column = [torch.cat([x, y]) for x, y in zip(column, [un_toks[:, t], *column[1:]])]
        pending.append(column)


@torch.no_grad()
def generate(model, prefix: Batch, **kwargs) -> list[list]:
    """Run ``iterate`` to the end. Returns per row the generated items in order: ints (layout token ids) and
    [D] latent tensors; the stop token is included; rows cut by ``max_new`` simply end."""
    b = prefix.tokens.shape[0]
    out: list[list] = [[] for _ in range(b)]
    done = [False] * b
    for st in iterate(model, prefix, **kwargs):
        for r in range(b):
            if done[r]:
                continue
            t = int(st.tokens[r])
            if st.modality[r] >= 0:
                d = list(model.latent_dims.values())[int(st.modality[r])]
                out[r].append(st.latents[r, :d].clone())
            else:
                out[r].append(t)
            done[r] = bool(st.finished[r])
    return out
