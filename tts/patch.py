"""Several VAE frames per sequence item ("patches", ``TTSConfig.patch``).

With ``patch`` = p the LatentLM reads and predicts p consecutive VAE frames at once: one item is the p frames'
latents concatenated ([p * D]), so the trunk steps at frame_rate / p and the diffusion head samples p frames
jointly. Frames that do not fill a last item are dropped (at most p - 1, the end of an utterance).
A latent store is viewed through ``PatchedStore``; statistics are the VAE's per-dim ones repeated p times.
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


class PatchedStore:
    """A ``tts.data.LatentStore`` seen in items of p frames: ``get`` -> [T // p, p * D], ``frames`` -> T // p."""

    def __init__(self, store, p: int):
        if p < 1:
            raise ValueError(f"patch must be >= 1, got {p}")
        self.store, self.p = store, p
        self.frame_rate = store.frame_rate

    def __contains__(self, uid: str) -> bool:
        return uid in self.store

    def __len__(self) -> int:
        return len(self.store)

    def frames(self, uid: str) -> int:
        return self.store.frames(uid) // self.p

    def get(self, uid: str) -> Tensor:
        return to_items(self.store.get(uid), self.p)
