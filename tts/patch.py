"""Several VAE frames per sequence item ("patches", ``TTSConfig.patch``).

With ``patch`` = p the LatentLM reads and predicts p consecutive VAE frames at once: one item is the p frames'
latents concatenated ([p * D]), so the trunk steps at frame_rate / p and the diffusion head samples p frames
jointly. Frames that do not fill a last item are dropped (at most p - 1, the end of an utterance).
``tts.data.LatentStore(root, patch=p)`` reads a store in items; statistics are the VAE's per-dim ones repeated
p times.
"""

from __future__ import annotations

from torch import Tensor


def to_items(z: Tensor, p: int) -> Tensor:
    """[T, D] frames -> [T // p, p * D] items (the tail that does not fill an item is dropped)."""
    if p == 1:
        return z
    n = z.shape[0] // p
    return z[: n * p].reshape(n, p * z.shape[1])


def to_frames(x: Tensor, p: int) -> Tensor:
    """[N, p * D] items -> [N * p, D] frames."""
    if p == 1:
        return x
    return x.reshape(x.shape[0] * p, x.shape[1] // p)


def repeat_stats(mean: Tensor, std: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """Per-dim VAE statistics [D] -> the items' [p * D] (frame-major, as ``to_items`` lays them out)."""
    return mean.repeat(p), std.repeat(p)
