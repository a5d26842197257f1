"""Image data: scikit-learn's bundled digits (offline) and ImageNet-style ImageFolder trees (PIL, no torchvision).

Dimension legend: n images, K channels, S image side (pixels). Pixels come back as float32 in [-1, 1].

- ``load_digits_images(size)``: the 1,797 8x8 handwritten digits (UCI, shipped inside scikit-learn), upscaled
  bilinearly to ``size`` x ``size``; labels 0-9. ``split_digits`` makes a fixed, stratified-enough train/test split.
- ``ImageFolder(root, size)``: ``root/<class>/*.{png,jpg,jpeg,bmp,webp}``; classes sorted by folder name; images
  are centre-cropped to a square and resized with PIL; RGB (K=3) or grayscale (K=1).
- ``save_grid(images, path, nrow)``: a PNG grid of images [n, K, S, S] in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_digits_images(size: int = 16) -> tuple[Tensor, Tensor]:
    """-> (images [1797, 1, size, size] in [-1, 1], labels [1797] long)."""
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"size must be >= 8 (the digits are 8x8), got {size}")
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # [n, 1, 8, 8] in [0, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 2 - 1).clamp(-1, 1), torch.tensor(d.target, dtype=torch.long)


def split_digits(
    images: Tensor, labels: Tensor, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fixed random split -> (train_x, train_y, test_x, test_y)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(labels) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return images[tr], labels[tr], images[te], labels[te]


class ImageFolder:
    """``root/<class name>/<image>``; items are (image [K, S, S] in [-1, 1], label). Classes sorted by name."""

    def __init__(self, root: str | Path, size: int, channels: int = 3):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"ImageFolder root {self.root} is not a directory")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.size, self.channels = size, channels
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.files: list[tuple[Path, int]] = []
        for ci, c in enumerate(self.classes):
            for p in sorted((self.root / c).rglob("*")):
                if p.suffix.lower() in IMAGE_EXTENSIONS:
                    self.files.append((p, ci))
        if not self.files:
            raise ValueError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}/<class>/; "
                "expected an ImageNet-style tree root/<class name>/<image file>"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image

        path, label = self.files[i]
        with Image.open(path) as im:
            im = im.convert("RGB" if self.channels == 3 else "L")
            w, h = im.size
            s = min(w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            im = im.resize((self.size, self.size), Image.BICUBIC)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0  # [S, S] or [S, S, 3]
        x = torch.from_numpy(arr)
        x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)  # [K, S, S]
        return x.contiguous(), label

    def load_all(self, limit: int | None = None) -> tuple[Tensor, Tensor]:
        """Read up to ``limit`` images into memory -> (images [n, K, S, S], labels [n])."""
        n = len(self) if limit is None else min(limit, len(self))
        xs, ys = zip(*(self[i] for i in range(n)))
        return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def save_grid(images: Tensor, path: str | Path, nrow: int = 10, scale: int = 2) -> Path:
    """Write images [n, K, S, S] in [-1, 1] as one PNG grid (``nrow`` per row, 1-pixel gaps, nearest upscaling)."""
    from PIL import Image

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [n, 1 or 3, S, S], got {tuple(images.shape)}")
    n, k, s, _ = images.shape
    rows = (n + nrow - 1) // nrow
    canvas = torch.ones(k, rows * (s + 1) + 1, nrow * (s + 1) + 1)
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2  # [n, K, S, S] in [0, 1]
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[:, 1 + r * (s + 1) : 1 + r * (s + 1) + s, 1 + c * (s + 1) : 1 + c * (s + 1) + s] = x[i]
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # [rows*S, cols*S, K]
    im = Image.fromarray(arr[..., 0] if k == 1 else arr)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
