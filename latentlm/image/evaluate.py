"""Scoring generated images: a small classifier trained on the real data, accuracy of the requested class, and a
Frechet distance in that classifier's feature space; FID with the standard Inception network from a local file.

Dimension legend: n images, K channels, S side, E feature dim.

``frechet_distance`` is the usual ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between Gaussians fitted to
two feature sets. "Classifier FD" uses the classifier's penultimate layer (E = ``feat_dim``), so its values are
only comparable between runs that share the classifier (same data, seed and steps); FID proper needs
``inception_features`` with the pytorch-fid Inception weights from a local path (never downloaded here).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"


@dataclass
class ClassifierConfig:
    channels: int = 1
    num_classes: int = 10
    width: int = 32
    feat_dim: int = 64  # E
    steps: int = 400
    batch: int = 64
    lr: float = 2e-3


class Classifier(nn.Module):
    """conv(3x3) x 2 with pooling -> global average -> Linear -> features [n, E] -> logits [n, classes]."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.body = nn.Sequential(
            nn.Conv2d(cfg.channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.feat = nn.Linear(2 * w, cfg.feat_dim)
        self.out = nn.Linear(cfg.feat_dim, cfg.num_classes)

    def features(self, x: Tensor) -> Tensor:  # [n, K, S, S] -> [n, E]
        h = self.body(x).mean((2, 3))  # [n, 2w]
        return F.relu(self.feat(h))

    def forward(self, x: Tensor) -> Tensor:  # [n, K, S, S] -> [n, classes]
        return self.out(self.features(x))


def train_classifier(
    images: Tensor, labels: Tensor, cfg: ClassifierConfig | None = None, seed: int = 0
) -> Classifier:
    """Train on real images [n, K, S, S] (with +-1 pixel random shifts as augmentation); eval mode on return."""
    cfg = cfg or ClassifierConfig(channels=images.shape[1])
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = Classifier(cfg)
    opt = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=1e-4)
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(labels), (cfg.batch,), generator=g)
        dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
        x = torch.roll(images[idx], shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(clf(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


@torch.no_grad()
def class_accuracy(clf: Classifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of images [n, K, S, S] the classifier assigns to the requested labels [n]."""
    return float((clf(images).argmax(-1) == labels).float().mean())


@torch.no_grad()
def classifier_features(clf: Classifier, images: Tensor, batch: int = 512) -> np.ndarray:
    return (
        torch.cat([clf.features(images[i : i + batch]) for i in range(0, len(images), batch)])
        .double()
        .numpy()
    )


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a [n1, E] and b [n2, E]."""
    from scipy import linalg

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [n, E] with the same E, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 samples per feature set")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # dead ReLU features make the covariances singular; handled below
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise (as pytorch-fid does)
        off = np.eye(len(s1)) * 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def inception_features(images: Tensor, weights: str | Path, batch: int = 50) -> np.ndarray:
    """Pool3 features [n, 2048] of the standard FID Inception network for images [n, 3, S, S] in [-1, 1].

    Needs the ``pytorch-fid`` package (its InceptionV3 definition) and its weights file at the local path
    ``weights``; nothing is downloaded here."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(
            f"FID Inception weights not found at {weights}. Download pt_inception-2015-12-05-6726825d.pth "
            f"from {INCEPTION_URL} (the pytorch-fid port of the TF FID Inception) and pass its local path."
        )
    try:
        from pytorch_fid import inception as pf
    except ImportError as e:
        raise ImportError(
            "FID needs the pytorch-fid package (pip install pytorch-fid; it brings torchvision) for the "
            "Inception network definition; the weights still come from the local path"
        ) from e
    # pytorch-fid's fid_inception_v3() without its download: same blocks, weights from the local file.
    inc = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inc.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    inc.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    inc.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    inc.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    inc.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    inc.Mixed_7b = pf.FIDInceptionE_1(1280)
    inc.Mixed_7c = pf.FIDInceptionE_2(2048)
    inc.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    pool = nn.MaxPool2d(3, stride=2)
    net = nn.Sequential(
        inc.Conv2d_1a_3x3, inc.Conv2d_2a_3x3, inc.Conv2d_2b_3x3, pool, inc.Conv2d_3b_1x1, inc.Conv2d_4a_3x3,
        pool, inc.Mixed_5b, inc.Mixed_5c, inc.Mixed_5d, inc.Mixed_6a, inc.Mixed_6b, inc.Mixed_6c,
        inc.Mixed_6d, inc.Mixed_6e, inc.Mixed_7a, inc.Mixed_7b, inc.Mixed_7c, nn.AdaptiveAvgPool2d(1),
    ).eval()  # fmt: skip
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)  # [n, 3, S, S]
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = F.interpolate(
                images[i : i + batch].float(), size=(299, 299), mode="bilinear", align_corners=False
            )
            feats.append(net(x).flatten(1))  # [b, 2048]
    return torch.cat(feats).double().numpy()
