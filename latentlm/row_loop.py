"""The one-row fast loop: ``decoding._follow`` for a single row whose every per-frame network runs in ONNX Runtime.

When one unguided row follows a plan and its trunk step, its one-step head and its step bridge (if any) all have
ONNX Runtime runtimes (``TTS.use_onnx``), what is left between the sessions is glue: building batches, embedding
items, per-step masks, tensor bookkeeping. Measured on the 2-core development machine (docs/experiments/
step-bridge.md) that glue was ~0.1 s of a 0.36-s synthesis. This loop does the same steps with NumPy arrays and
Python lists: the items a trunk call reads are embedded by the model's own ``embed_items``, the head's noise is
drawn from the row's generator exactly as ``DiffusionHead.sample`` draws it, and the sessions are called
directly. Same items, positions, trunk calls and draws as the general loop, so the
same frames to float rounding (tests/test_bridge.py holds the two together).

Dimension legend: N items in a trunk call, C width, D latent dim, K token slots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

FAST_ROW = True  # off: every row goes through the general loop


def covers(model, heads: dict, modality: str, bridge, cfg: float, steps: int, solver: str, read_noise: float,
           rows: int, generator) -> bool:
    """Whether ``row_loop`` can decode this call: one unguided row, one-step sampling, every network with a
    runtime that takes it (the trunk's decides for its cache at the first call)."""
    head = heads[modality] if modality in heads else None
    return (
        FAST_ROW
        and rows == 1
        and cfg == 1.0
        and steps == 1
        and solver == "dpm++2m"
        and read_noise == 0
        and len(model.latent_dims) == 1
        and getattr(model.trunk, "runtime", None) is not None
        and hasattr(model.trunk.runtime, "step")
        and head is not None
        and hasattr(getattr(head, "runtime", None), "session")
        and (bridge is None or hasattr(getattr(bridge, "runtime", None), "session"))
        and (generator is None or isinstance(generator, torch.Generator) or len(generator) == 1)
    )


def embed(model, tokens: list[int], latents: list[np.ndarray | None], d: int) -> np.ndarray:
    """The pending items' input embeddings [N, C] as ``LatentLM.embed_items`` computes them, bit for bit (int8
    sessions turn float rounding into different frames): token rows are rows of the embedding table; latent rows
    come from the model's own latent projection called on the same [1, N, D] input."""
    x = model.embed.weight.detach().numpy()[tokens]  # [N, C] a copy
    is_lat = [z is not None for z in latents]
    if any(is_lat):
        lat = np.zeros((len(tokens), d), dtype=np.float32)
        for i, z in enumerate(latents):
            if z is not None:
                lat[i] = z
        (m,) = model.latent_dims
        proj = model.latent_in[m](torch.from_numpy(lat)[None])[0].numpy()  # [N, C]
        x[is_lat] = proj[is_lat]
    return x


def row_loop(
    model, plan: list[int], head, bridge, bridged: list[bool], slots: list[list[int]], temperature: float,
    generator, cache, first_hidden: np.ndarray, T: int, make_step: Callable,
) -> Iterator:
    """Decode one row along ``plan`` (its first ``T`` steps). ``first_hidden`` [C]: the trunk's state after the
    prefix; ``bridged`` / ``slots``: ``bridge_plan``'s marks (all False without a bridge); ``make_step(t, z)``:
    the ``decoding.Step`` of step t (z [D] NumPy, or None for a token); the loop ends with the first finished
    one."""
    lay = model.layout
    (m,) = model.latent_dims
    d = model.latent_dims[m]
    trunk = model.trunk.runtime
    g = generator if generator is None or isinstance(generator, torch.Generator) else generator[0]
    head_run, bridge_run = head.runtime.session.run, bridge.runtime.session.run if bridge is not None else None
    last = first_hidden[None].astype(np.float32)  # [1, C] the trunk's newest state
    pending_tok: list[int] = []  # items read at the next trunk call: token ids, latents where is_lat
    pending_lat: list[np.ndarray | None] = []
    src_h = src_z = None  # the previous latent's state and value (what a bridged latent is predicted from)
    for t in range(T):
        tok = plan[t]
        z = None
        if tok == lay.lat:
            if bridged[t]:
                toks = np.asarray([slots[t]], dtype=np.int64)
                (cond,) = bridge_run(None, {"h": src_h, "z": src_z, "tokens": toks})
            else:
                if pending_tok:
                    last = trunk.step(embed(model, pending_tok, pending_lat, d), cache)[-1:]  # [1, C]
                    pending_tok.clear()
                    pending_lat.clear()
                cond = last
            noise = torch.randn((1, d), generator=g).numpy()
            (z,) = head_run(None, {"x_T": noise * np.float32(temperature), "cond": cond})  # [1, D]
            src_h, src_z = cond, z
        st = make_step(t, None if z is None else z[0])
        yield st
        if st.finished.all():
            return
        pending_tok.append(tok)
        pending_lat.append(None if z is None else z[0])
