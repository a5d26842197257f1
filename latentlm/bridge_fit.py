"""Fitting a step bridge (latentlm/bridge.py) to a model's own decoding.

1. ``SequenceRecorder``: hooks a LatentLM while it decodes with a KV cache and keeps, per row, every item the trunk
   read (tokens, latents as read) and the trunk's output at each: the states a bridge must land on, on-policy
   (the model's own latents, its drift included). Record unguided decodes (cfg 1, a one-step head): guided ones
   interleave their null-condition rows.
2. ``latentlm.bridge.bridge_pairs`` turns each row into (h_j, z_j, tokens, h_{j+1}) pairs.
3. ``fit_bridge``: the bridge trained on them, frozen head beside it. Loss: the hidden states' squared error
   (over their variance) plus what it does to the frame: the one-step head's sample from the predicted state
   against its sample from the true one, from the same noise at temperatures uniform in [0, max_temperature].
   The held-out pairs (whole rows, split off before training) pick the kept step; the report sets the bridge
   beside the no-op bridge (h' = h_j, its starting point).

Dimension legend: P pairs, C width, D latent dim, K token slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from latentlm.bridge import StepBridge, bridge_pairs
from latentlm.distill import one_step
from latentlm.head import DiffusionHead


class SequenceRecorder:
    """Records the rows a LatentLM decodes (``rows``: per row a dict of tokens [N], latents [N, D], modality [N],
    hidden [N, C], and prefill: how many of the N items were the prefix). A call with an empty cache starts a new
    decode. ``close()`` removes the hooks."""

    def __init__(self, model: torch.nn.Module):
        self.rows: list[dict[str, Tensor]] = []
        self._cur: list[list[list[Tensor]]] | None = None
        self._new = False
        self._hooks = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, module, args, kwargs) -> None:
        cache = kwargs.get("cache")
        if cache is not None and cache.length == 0:
            self._flush()
            self._new = True

    def _post(self, module, args, kwargs, out: Tensor) -> None:
        if kwargs.get("cache") is None:
            return
        batch = args[0]
        lat = batch.latents if batch.inputs is None else batch.inputs
        if self._new or self._cur is None:
            self._cur = [[[], [], [], []] for _ in range(batch.tokens.shape[0])]
            self._new = False
        for r, parts in enumerate(self._cur):
            v = batch.valid[r]
            for dst, x in zip(parts, (batch.tokens[r], lat[r], batch.modality[r], out[r])):
                dst.append(x[v].detach().float().cpu() if x.is_floating_point() else x[v].cpu())

    def _flush(self) -> None:
        if self._cur is not None:
            for parts in self._cur:
                t, z, m, h = (torch.cat(p) for p in parts)
                self.rows.append({"tokens": t, "latents": z, "modality": m, "hidden": h, "prefill": len(parts[0][0])})
        self._cur = None

    def close(self) -> list[dict[str, Tensor]]:
        """Stop recording; the recorded rows."""
        self._flush()
        for h in self._hooks:
            h.remove()
        self._hooks = []
        return self.rows


def pairs_of(rows: list[dict[str, Tensor]], modality: int, lat: int, empty: int, max_tokens: int) -> dict:
    """Recorded rows -> training pairs {h, z, slots, target, row} (row: which recorded row each came from)."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("h", "z", "slots", "target", "row")}
    for i, r in enumerate(rows):
        h, z, k, tgt = bridge_pairs(
            r["tokens"], r["latents"], r["modality"] == modality, r["hidden"], lat, empty, max_tokens
        )
        for key, x in zip(("h", "z", "slots", "target"), (h, z, k, tgt)):
            parts[key].append(x)
        parts["row"].append(torch.full((len(h),), i, dtype=torch.long))
    return {k: torch.cat(v) for k, v in parts.items()}


def chained(data: dict[str, Tensor]) -> Tensor:
    """[P] per pair (a -> b) the index of the pair (b -> c) that continues it in the same row, -1 where none: the
    pair after it when its source state is this one's target (pairs_of keeps a row's pairs in order)."""
    h, tgt, row = data["h"], data["target"], data["row"]
    nxt = torch.full((len(h),), -1, dtype=torch.long)
    if len(h) > 1:
        same = (row[1:] == row[:-1]) & (h[1:] == tgt[:-1]).all(-1)
        nxt[:-1] = torch.where(same, torch.arange(1, len(h)), -1)
    return nxt


@dataclass
class BridgeReport:
    pairs: int
    heldout_pairs: int
    best_step: int
    heldout_hidden_rel_mse: float  # ||h' - h||^2 / ||h - mean||^2 on held-out pairs
    heldout_frame_mse: float  # the head's sample from h' against from h, same noise, temperature 0.3
    noop_hidden_rel_mse: float  # the same two with h' = h_j (no bridge: the previous state)
    noop_frame_mse: float
    chain: int = 1  # bridged latents in a row it was trained for (its own states fed back: a rollout)
    heldout_chain_frame_mse: float | None = None  # the frame error at the chain's last step (chain > 1)


def _frame_mse(head: DiffusionHead, pred: Tensor, target: Tensor, noise: Tensor, temperature) -> Tensor:
    with torch.no_grad():
        want = one_step(head, noise * temperature, target)
    return ((one_step(head, noise * temperature, pred) - want) ** 2).mean()


def fit_bridge(
    bridge: StepBridge,
    head: DiffusionHead,
    data: dict[str, Tensor],
    train_steps: int = 4000,
    batch: int = 256,
    lr: float = 1e-3,
    max_temperature: float = 1.0,
    heldout: float = 0.05,
    generator: torch.Generator | None = None,
    log_every: int = 500,
    chain: int = 1,
) -> BridgeReport:
    """Train ``bridge`` in place on ``data`` (``pairs_of``); the head stays frozen. Keeps the weights of the
    evaluated step with the lowest held-out frame error (then hidden-state error). ``chain`` k > 1: also trained
    (and judged) on rollouts, where each of up to k consecutive pairs starts from the bridge's own prediction of
    the previous one (``chained``), as a decoder with ``BridgeConfig.chain`` k feeds it."""
    if chain < 1:
        raise ValueError(f"chain must be >= 1, got {chain}")
    rows = int(data["row"].max()) + 1 if len(data["row"]) else 0
    perm = torch.randperm(rows, generator=generator)
    val_rows = perm[: max(1, int(round(rows * heldout)))]
    is_val = torch.isin(data["row"], val_rows)
    tr = {k: v[~is_val] for k, v in data.items()}
    va = {k: v[is_val] for k, v in data.items()}
    tr["next"], va["next"] = chained(tr), chained(va)
    n = len(tr["h"])
    if n == 0 or len(va["h"]) == 0:
        raise ValueError(f"fit_bridge: {n} training and {len(va['h'])} held-out pairs: record more rows")
    var = ((tr["target"] - tr["target"].mean(0)) ** 2).mean().clamp_min(1e-8)
    for p in head.parameters():
        p.requires_grad_(False)
    head.eval()
    val_noise = torch.randn(va["h"].shape[0], bridge.cfg.latent_dim, generator=generator)

    def evaluate(pred_fn) -> tuple[float, float]:
        hid, frame, m = 0.0, 0.0, len(va["h"])
        with torch.no_grad():
            for s in range(0, m, 4096):
                sl = slice(s, s + 4096)
                pred = pred_fn(sl)
                hid += float(((pred - va["target"][sl]) ** 2).sum())
                frame += float(_frame_mse(head, pred, va["target"][sl], val_noise[sl], 0.3)) * len(pred)
        return hid / (m * bridge.cfg.dim * float(var)), frame / m

    def rollout_frame() -> float:
        """Held-out frame error at the last step of ``chain``-long rollouts (pairs that continue that far)."""
        idx = torch.arange(len(va["h"]))
        for _ in range(chain - 1):
            idx = idx[va["next"][idx] >= 0]
        if len(idx) == 0:
            return math.nan
        with torch.no_grad():
            pred, i = bridge.predict(va["h"][idx], va["z"][idx], va["slots"][idx]), idx
            for _ in range(chain - 1):
                i = va["next"][i]
                pred = bridge.predict(pred, va["z"][i], va["slots"][i])
            return float(_frame_mse(head, pred, va["target"][i], val_noise[i], 0.3))

    noop = evaluate(lambda sl: va["h"][sl])
    opt = torch.optim.AdamW(bridge.parameters(), lr=lr, weight_decay=0.01)
    best = ((math.inf, math.inf), 0, None, (*noop, None))
    bridge.train()
    every = max(1, min(log_every, train_steps))
    for step in range(1, train_steps + 1):
        for g in opt.param_groups:  # warm-up then cosine
            g["lr"] = lr * min(1.0, step / 200) * 0.5 * (1 + math.cos(math.pi * (step - 1) / train_steps))
        idx = torch.randint(0, n, (batch,), generator=generator)
        pred = bridge.predict(tr["h"][idx], tr["z"][idx], tr["slots"][idx])
        target = tr["target"][idx]
        noise = torch.randn(batch, bridge.cfg.latent_dim, generator=generator)
        temp = torch.rand(batch, 1, generator=generator) * max_temperature
        loss = ((pred - target) ** 2).mean() / var + _frame_mse(head, pred, target, noise, temp)
        for _ in range(chain - 1):  # rollouts: the next pair from this prediction
            keep = tr["next"][idx] >= 0
            if not bool(keep.any()):
                break
            idx, pred, noise, temp = tr["next"][idx[keep]], pred[keep], noise[keep], temp[keep]
            pred = bridge.predict(pred, tr["z"][idx], tr["slots"][idx])
            target = tr["target"][idx]
            loss = loss + ((pred - target) ** 2).mean() / var + _frame_mse(head, pred, target, noise, temp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bridge.parameters(), 1.0)
        opt.step()
        if step % every == 0 or step == train_steps:
            bridge.eval()
            hid, frame = evaluate(lambda sl: bridge.predict(va["h"][sl], va["z"][sl], va["slots"][sl]))
            last = rollout_frame() if chain > 1 else None
            bridge.train()
            print(f"bridge step {step}: loss {loss.item():.4f}, held-out hidden {hid:.4f} (no-op {noop[0]:.4f}), "
                  f"frame {frame:.4f} (no-op {noop[1]:.4f})"
                  + (f", frame at step {chain} of a rollout {last:.4f}" if last is not None else ""), flush=True)
            key = (frame + (last if last is not None and last == last else 0.0), hid)
            if key < best[0]:  # the frame errors first; the states' error breaks their ties
                state = {k: v.detach().clone() for k, v in bridge.state_dict().items()}
                best = (key, step, state, (hid, frame, last))
    bridge.load_state_dict(best[2])
    bridge.eval()
    return BridgeReport(
        pairs=n, heldout_pairs=len(va["h"]), best_step=best[1], heldout_hidden_rel_mse=best[3][0],
        heldout_frame_mse=best[3][1], noop_hidden_rel_mse=noop[0], noop_frame_mse=noop[1], chain=chain,
        heldout_chain_frame_mse=best[3][2] if chain > 1 else None,
    )
