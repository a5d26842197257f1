"""Frame-level phoneme durations: a flat-start HMM forced aligner over VAE latents, trained by Viterbi (no net).

Dimension legend: T latent frames, D latent dim, F feature dim (D, or 2 D with deltas), N phoneme symbols of an
utterance, U alignment units, S HMM states (U + 2 edge silences), V vocab size, M pause mixture components,
R = V + M Gaussian rows.

    aligner = PhoneAligner(Vocab().symbols)
    history = aligner.fit([(store.get(uid), ids[uid]) for uid in uids])   # log-likelihood per frame
    dur = aligner.align(latents, ids)            # int64 [N]: frames of each symbol, dur.sum() == T
    python -m tts.durations --latents data/latents          # -> data/latents/durations.json + aligner.json
                                                            #    (tts/durations.py: a whole latent store)

Units: ``(ˈ|ˌ)* base (ː|̩|ʲ|ʰ)*`` is one phone unit (>= 1 frame; ``<unk>`` is a phone); a run of pause
symbols (space and ``, . ! ? ; :``) is one pause unit (>= 0 frames; ", " is one pause, not two that could split
it arbitrarily). Marks with nothing to attach to join a neighbour: a stress mark before a pause joins the pause,
a length mark after a pause joins the pause, marks at the very start join the first unit, at the very end the
last one. Units cover the symbols in order, so a layout can put each unit's symbols and then its frames.

Model: one state per unit, left to right, between an optional leading and trailing silence state; pause states
may be skipped, phone states take >= 1 frame; no transition scores. A phone state emits the diagonal Gaussian of
its base symbol; every pause state and the edge silences share one pause model, a mixture of M diagonal Gaussians
(the corpora's silences differ: with one Gaussian, fitted mostly to the synthetic voices' silence, LibriSpeech
pauses went to the phones, and 49 of 1000 spliced utterance pairs of data/latents missed the splice by more than
4 frames; 6 of 1000 with 4 components). Features: the latents normalised per utterance and dim (CMVN). Deltas are
optional and off: they did not help that splice test (10 of 1000 misses against 6).

Training: flat start (phone units share each utterance's frames uniformly, pauses get none; the pause components
start from k-means over each utterance's first and last 2 frames), then Viterbi re-estimation (a pause frame goes
to its best component); variances are floored at ``var_floor`` times the pooled feature variance. The Viterbi
score cannot fall from one iteration to the next.

Output: a unit's frames go to its LAST symbol (a stress mark before a vowel gets 0, a length mark after it gets
the vowel's frames); leading silence goes to the first unit, trailing silence to the utterance's last symbol.
An utterance with fewer frames than phone units cannot give every phone a frame: there every unit may take 0
frames (a silent fallback; the durations still sum to T).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from tts.chunk_pool import ChunkPool
from tts.frontend import Vocab

SYMBOLS: list[str] = Vocab().symbols  # the front end's vocabulary v1; the id of a symbol is its index
PAUSES = frozenset(" ,.!?;:")
STRESS = frozenset("ˈˌ")
MODIFIERS = frozenset("ː\u0329ʲʰ")


class Unit(NamedTuple):
    first: int  # index of the unit's first symbol in the utterance
    last: int  # index of its last symbol (the one that gets the unit's frames)
    cls: int  # Gaussian class: the base symbol id, or the pause class (= len(symbols))
    pause: bool


def _check_ids(ids: Sequence[int], n_symbols: int) -> list[int]:
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError("durations: empty phoneme ids")
    bad = [i for i in ids if not 0 <= i < n_symbols]
    if bad:
        raise ValueError(f"durations: phoneme ids out of range for a vocab of {n_symbols}: {bad[:5]}")
    return ids


def units(ids: Sequence[int], symbols: Sequence[str] = SYMBOLS) -> list[Unit]:
    """Group an utterance's symbols into alignment units (see the module docstring); they cover 0..N-1."""
    ids = _check_ids(ids, len(symbols))
    pause_cls = len(symbols)
    out: list[Unit] = []
    start = 0  # first symbol not yet in a unit (pending stress marks / orphan modifiers)
    i = 0
    while i < len(ids):
        s = symbols[ids[i]]
        if s in STRESS or (s in MODIFIERS and (start < i or not out)):
            pass  # stays pending: a prefix of the next unit
        elif s in MODIFIERS:  # right after a pause unit (a phone absorbs its own modifiers below)
            out[-1] = out[-1]._replace(last=i)
            start = i + 1
        elif s in PAUSES:
            if out and out[-1].pause:  # a run of pause symbols is one unit
                out[-1] = out[-1]._replace(last=i)
            else:
                out.append(Unit(start, i, pause_cls, True))
            start = i + 1
        else:  # a phone (or <unk>) with the modifiers that follow it
            base = i
            while i + 1 < len(ids) and symbols[ids[i + 1]] in MODIFIERS:
                i += 1
            out.append(Unit(start, i, ids[base], False))
            start = i + 1
        i += 1
    if not out:  # nothing but marks
        return [Unit(0, len(ids) - 1, pause_cls, True)]
    if start < len(ids):  # trailing marks join the last unit
        out[-1] = out[-1]._replace(last=len(ids) - 1)
    return out


def features(latents: torch.Tensor | np.ndarray, deltas: bool = False) -> np.ndarray:
    """[T, D] latents -> [T, F] float64: normalised per utterance and dim, then (optionally) their deltas."""
    x = latents.detach().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"durations: latents must be [T, D] with T, D >= 1; got shape {tuple(x.shape)}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("durations: latents contain NaN or inf")
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-3)
    if not deltas:
        return x
    pad = np.concatenate([x[:1], x[:1], x, x[-1:], x[-1:]])  # [T + 4, D], edges repeated
    d = (pad[3:-1] - pad[1:-3] + 2 * (pad[4:] - pad[:-4])) / 10.0  # regression over +-2 frames
    return np.concatenate([x, d], axis=1)  # [T, 2 D]


# --- Viterbi


def _moves(skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-to-right moves into each of S states: src [J, S] = s - j for jumps j = 0 (stay) .. J - 1, and the
    mask of the allowed ones (a jump of j passes j - 1 states, which must all be skippable)."""
    S = len(skip)
    longest, run = 1, 0
    for k in skip:
        run = run + 1 if k else 0
        longest = max(longest, run + 1)
    s = np.arange(S)
    src = s[None, :] - np.arange(longest + 1)[:, None]  # [J, S]
    hard = np.concatenate([[0], np.cumsum(~skip)])  # [S + 1]: non-skippable states before index i
    srcc = np.maximum(src, 0)
    between = hard[s][None, :] - hard[np.minimum(srcc + 1, S)]  # non-skippable states strictly between
    ok = (src >= 0) & ((between == 0) | (src == s[None, :]))
    return srcc, ok


def viterbi(ll: np.ndarray, skip: np.ndarray, open_end: bool = False) -> tuple[np.ndarray, float]:
    """Best left-to-right path through S states over T frames. ll [T, S]: frame log-likelihoods per state;
    skip [S]: states that may take 0 frames (the others take >= 1). ``open_end``: the frames are only the start
    of the utterance, so the path may end in any state. Returns (state of each frame [T], the path's
    log-likelihood)."""
    T, S = ll.shape
    src, ok = _moves(skip)  # [J, S]
    hard = np.cumsum(~skip)  # [S]: non-skippable states up to and including i
    start = (hard - ~skip) == 0  # [S]: every state before i is skippable
    end = (hard[-1] - hard) == 0  # [S]: every state after i is skippable
    cols = np.arange(S)
    delta = np.where(start, ll[0], -np.inf)  # [S]
    back = np.zeros((T, S), dtype=np.int16)  # jump taken into each state
    for t in range(1, T):
        cand = np.where(ok, delta[src], -np.inf)  # [J, S]
        j = cand.argmax(0)  # ties: the smallest jump (stay)
        back[t] = j
        delta = cand[j, cols] + ll[t]
    final = delta if open_end else np.where(end, delta, -np.inf)
    s = int(final.argmax())
    score = float(final[s])
    if not math.isfinite(score):
        raise ValueError(
            f"durations: no path of {T} frames through {S} states ({int(hard[-1])} must be visited)"
        )
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    return path, score


# --- the aligner


class _Stats(NamedTuple):
    count: np.ndarray  # [R] frames per Gaussian row
    total: np.ndarray  # [R, F] sum of their features
    square: np.ndarray  # [R, F] sum of their squared features
    ll: float  # summed path log-likelihood
    frames: int

    def __add__(self, o: _Stats) -> _Stats:  # type: ignore[override]
        return _Stats(*(a + b for a, b in zip(self, o)))


def _accumulate(x: np.ndarray, rows: np.ndarray, R: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row count [R], sum [R, F], sum of squares [R, F] of frames x [T, F] that belong to rows [T]."""
    onehot = np.zeros((len(rows), R))
    onehot[np.arange(len(rows)), rows] = 1.0  # [T, R]
    return onehot.sum(0), onehot.T @ x, onehot.T @ (x * x)


def _kmeans(x: np.ndarray, k: int, iterations: int = 20) -> np.ndarray:
    """Cluster labels [E] of points x [E, F] into <= k clusters (k-means++ seeding with a fixed seed)."""
    rng = np.random.default_rng(0)
    centers = [x[rng.integers(len(x))]]
    for _ in range(min(k, len(x)) - 1):
        d = np.min([((x - c) ** 2).sum(1) for c in centers], axis=0)  # [E]
        if d.sum() <= 0:
            break
        centers.append(x[rng.choice(len(x), p=d / d.sum())])
    c = np.array(centers)  # [k, F]
    for _ in range(iterations):
        label = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)  # [E]
        c = np.array([x[label == j].mean(0) if (label == j).any() else c[j] for j in range(len(c))])
    return label


class PhoneAligner:
    """Diagonal Gaussians per base phone class and a small pause mixture, trained by flat-start Viterbi (see
    the module). Rows of ``means``/``vars``: the vocab's symbol ids (phone classes), then the ``pause_mixtures``
    pause components (silence differs a lot between recordings and voices)."""

    def __init__(
        self,
        symbols: Sequence[str] = SYMBOLS,
        deltas: bool = False,
        var_floor: float = 0.01,
        pause_mixtures: int = 4,
    ):
        if pause_mixtures < 1 or var_floor <= 0:
            raise ValueError(
                f"durations: need pause_mixtures >= 1 and var_floor > 0, got {pause_mixtures}, {var_floor}"
            )
        self.symbols, self.deltas, self.var_floor = list(symbols), deltas, var_floor
        self.pause_mixtures = pause_mixtures
        self.means: np.ndarray | None = None  # [R, F], R = V + M rows
        self.vars: np.ndarray | None = None  # [R, F]
        self.logw: np.ndarray | None = None  # [R] log mixture weight (0 for the phone rows)
        self.counts: np.ndarray | None = None  # [R] training frames per row (last iteration)
        self.history: list[float] = []  # mean log-likelihood per frame: flat start, then each iteration

    @property
    def pause_cls(self) -> int:
        return len(self.symbols)

    @property
    def rows(self) -> int:
        return len(self.symbols) + self.pause_mixtures

    # -- per utterance

    def _prepare(self, latents, ids) -> tuple[np.ndarray, list[Unit]]:
        return features(latents, self.deltas), units(ids, self.symbols)

    def _states(self, us: list[Unit], T: int, prefix: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Class [S] and skippable [S] of the states: leading silence, the units, trailing silence. ``prefix``:
        the frames are only the start of the utterance (the path stops where they do: no fallback needed)."""
        cls = np.array([self.pause_cls, *(u.cls for u in us), self.pause_cls])
        skip = np.array([True, *(u.pause for u in us), True])
        # too few frames for a frame per phone (whole utterances only): every unit may take none
        if not prefix and int((~skip).sum()) > T:
            skip[:] = True
        return cls, skip

    def _gauss(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """[T, F] features -> [T, len(rows)] log weight + log density of each frame under each row's Gaussian."""
        mu, var = self.means[rows], self.vars[rows]  # [C, F]
        prec = 1.0 / var
        quad = (x * x) @ prec.T - 2.0 * x @ (mu * prec).T + (mu * mu * prec).sum(1)  # [T, C]
        const = np.log(var).sum(1) + x.shape[1] * math.log(2 * math.pi)  # [C]
        return self.logw[rows] - 0.5 * (quad + const)

    def _loglik(self, x: np.ndarray, cls: np.ndarray) -> np.ndarray:
        """[T, F] features, classes [S] -> [T, S] log-likelihood of each frame in each state (a pause state
        takes its best component: the Viterbi approximation of the mixture)."""
        used, inv = np.unique(cls, return_inverse=True)  # [C], [S]
        phones = used[used != self.pause_cls]
        ll = self._gauss(x, phones)  # [T, C'] (used is sorted: the pause class, if any, comes last)
        if len(phones) < len(used):
            pause = self._gauss(x, np.arange(self.pause_cls, self.rows)).max(1, keepdims=True)  # [T, 1]
            ll = np.concatenate([ll, pause], axis=1)
        return ll[:, inv]  # [T, S]

    def _frame_rows(self, x: np.ndarray, cls: np.ndarray) -> np.ndarray:
        """Classes of the frames [T] -> their rows [T] (a pause frame: its best component)."""
        rows = cls.copy()
        p = cls == self.pause_cls
        if p.any():
            rows[p] = self.pause_cls + self._gauss(x[p], np.arange(self.pause_cls, self.rows)).argmax(1)
        return rows

    def _rows_ll(self, x: np.ndarray, rows: np.ndarray) -> float:
        """Log-likelihood of frames [T, F] under given rows [T] (the flat start's score)."""
        used, inv = np.unique(rows, return_inverse=True)
        return float(self._gauss(x, used)[np.arange(len(x)), inv].sum())

    def _path(self, x: np.ndarray, us: list[Unit]) -> tuple[np.ndarray, np.ndarray, float]:
        """(state of each frame [T], class of each state [S], path log-likelihood)."""
        cls, skip = self._states(us, len(x))
        path, score = viterbi(self._loglik(x, cls), skip)
        return path, cls, score

    @staticmethod
    def _durations(us: list[Unit], path: np.ndarray, n_symbols: int) -> np.ndarray:
        per_state = np.bincount(path, minlength=len(us) + 2)  # [S]
        dur = np.zeros(n_symbols, dtype=np.int64)  # [N]
        dur[[u.last for u in us]] = per_state[1:-1]
        dur[us[0].last] += per_state[0]  # leading silence: the first unit
        dur[n_symbols - 1] += per_state[-1]  # trailing silence: the last symbol
        return dur

    def align_prefix(self, latents: torch.Tensor | np.ndarray, ids: Sequence[int]) -> tuple[np.ndarray, int]:
        """Latents [T, D] of the START of an utterance whose phoneme ids [N] are all given (a continuation
        prompt): (frames per symbol int64 [N] summing to T, index of the unit (``units(ids)``) being said at
        the last frame: -1 while still in the leading silence, len(units) once in the trailing silence)."""
        if self.means is None:
            raise ValueError("durations: the aligner is not fitted (call fit or from_dict)")
        x, us = self._prepare(latents, ids)
        cls, skip = self._states(us, len(x), prefix=True)
        path, _ = viterbi(self._loglik(x, cls), skip, open_end=True)
        return self._durations(us, path, len(ids)), int(path[-1]) - 1

    def align(self, latents: torch.Tensor | np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Latents [T, D] and phoneme ids [N] -> frames per symbol, int64 [N] summing to T."""
        if self.means is None:
            raise ValueError("durations: the aligner is not fitted (call fit or from_dict)")
        x, us = self._prepare(latents, ids)
        return self._durations(us, self._path(x, us)[0], len(ids))

    def loglik(self, latents: torch.Tensor | np.ndarray, ids: Sequence[int]) -> float:
        """Mean log-likelihood per frame of the best alignment (compare models, or flag a wrong transcript)."""
        if self.means is None:
            raise ValueError("durations: the aligner is not fitted (call fit or from_dict)")
        x, us = self._prepare(latents, ids)
        return self._path(x, us)[2] / len(x)

    # -- training

    def _zero(self, F: int) -> _Stats:
        return _Stats(np.zeros(self.rows), np.zeros((self.rows, F)), np.zeros((self.rows, F)), 0.0, 0)

    def _estep(self, data: Sequence[tuple[np.ndarray, list[Unit]]]) -> _Stats:
        acc = self._zero(self.means.shape[1])
        for x, us in data:
            path, cls, score = self._path(x, us)
            acc = acc + _Stats(*_accumulate(x, self._frame_rows(x, cls[path]), self.rows), score, len(x))
        return acc

    def _flat(self, data: Sequence[tuple[np.ndarray, list[Unit]]]) -> tuple[_Stats, list[tuple]]:
        """Stats of the flat-start segmentation (phones share each utterance uniformly; pauses get nothing) and
        its (frames, rows) pairs; the pause components start from k-means on each utterance's first and last 2
        frames (edge silence, in most recordings)."""
        acc, rows, edges = self._zero(data[0][0].shape[1]), [], []
        for x, us in data:
            phones = [u.cls for u in us if not u.pause]
            T = len(x)
            edges.append(x[np.unique(np.r_[0 : min(2, T), max(T - 2, 0) : T])])
            if not phones:
                continue
            r = np.array(phones)[np.arange(T) * len(phones) // T]  # [T]
            acc = acc + _Stats(*_accumulate(x, r, self.rows), 0.0, T)
            rows.append((x, r))
        e = np.concatenate(edges)  # [E, F]
        k = _kmeans(e, self.pause_mixtures)  # [E]
        st = _accumulate(e, self.pause_cls + k, self.rows)
        return acc + _Stats(*st, 0.0, 0), rows

    def _mstep(self, st: _Stats, floor: np.ndarray) -> None:
        seen = st.count > 0
        n = np.maximum(st.count, 1)[:, None]
        mean = st.total / n
        var = np.maximum(st.square / n - mean * mean, floor)
        self.means[seen], self.vars[seen] = mean[seen], var[seen]
        w = st.count[self.pause_cls :] / max(st.count[self.pause_cls :].sum(), 1)
        self.logw[self.pause_cls :] = np.log(np.maximum(w, 1e-12))
        self.counts = st.count

    def fit(
        self,
        utterances: Iterable[tuple[torch.Tensor | np.ndarray, Sequence[int]]],
        iterations: int = 8,
        progress: bool = True,
        workers: int = 1,
    ) -> list[float]:
        """Flat start + ``iterations`` rounds of Viterbi re-estimation on (latents [T, D], ids) pairs. Returns
        (and keeps in ``history``) the mean log-likelihood per frame of the flat segmentation and of each
        iteration's best paths (non-decreasing)."""
        data = [self._prepare(z, ids) for z, ids in utterances]
        if not data:
            raise ValueError("durations: fit needs at least one utterance")
        flat, rows = self._flat(data)
        n = flat.count.sum()
        mean = flat.total.sum(0) / n  # [F]
        pooled = flat.square.sum(0) / n - mean**2  # [F]
        floor = self.var_floor * pooled
        self.means, self.vars = np.tile(mean, (self.rows, 1)), np.tile(pooled, (self.rows, 1))
        self.logw = np.zeros(self.rows)
        self._mstep(flat, floor)
        ll = sum(self._rows_ll(x, r) for x, r in rows)
        self.history = [ll / max(flat.frames, 1)]
        t0 = time.time()
        if progress:
            print(
                f"durations: {len(data)} utterances, {flat.frames} frames; flat start {self.history[0]:.3f}"
            )
        with ChunkPool(data, workers) as pool:
            for it in range(iterations):
                st = sum(pool.map(_estep, self), start=self._zero(len(mean)))
                self.history.append(st.ll / st.frames)
                self._mstep(st, floor)
                if progress:
                    dt = time.time() - t0
                    print(
                        f"durations: iteration {it + 1}/{iterations}: {self.history[-1]:.3f} per frame ({dt:.0f} s)"
                    )
        return self.history

    def align_many(
        self, utterances: Iterable[tuple[torch.Tensor | np.ndarray, Sequence[int]]], workers: int = 1
    ) -> list[np.ndarray]:
        """``align`` over many (latents, ids) pairs, in ``workers`` processes."""
        data = [self._prepare(z, ids) for z, ids in utterances]
        with ChunkPool(data, workers) as pool:
            return [d for chunk in pool.map(_align, self) for d in chunk]

    # -- persistence

    def to_dict(self) -> dict:
        if self.means is None:
            raise ValueError("durations: the aligner is not fitted")
        return {
            "symbols": self.symbols,
            "deltas": self.deltas,
            "var_floor": self.var_floor,
            "pause_mixtures": self.pause_mixtures,
            "means": self.means.tolist(),
            "vars": self.vars.tolist(),
            "logw": self.logw.tolist(),
            "counts": self.counts.tolist(),
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, d: dict) -> PhoneAligner:
        a = cls(d["symbols"], d["deltas"], d["var_floor"], d["pause_mixtures"])
        a.means, a.vars = np.array(d["means"], dtype=np.float64), np.array(d["vars"], dtype=np.float64)
        a.logw = np.array(d["logw"], dtype=np.float64)
        a.counts, a.history = np.array(d["counts"]), list(d["history"])
        if a.means.shape != a.vars.shape or a.means.shape[0] != a.rows or a.logw.shape != (a.rows,):
            raise ValueError(
                f"durations: model shapes {a.means.shape}/{a.vars.shape}/{a.logw.shape} do not fit "
                f"{len(a.symbols)} symbols + {a.pause_mixtures} pause components"
            )
        return a


# --- the functions the worker processes run over chunks of the utterances (tts/chunk_pool.py)


def _estep(a: PhoneAligner, data: Sequence[tuple[np.ndarray, list[Unit]]]) -> _Stats:
    return a._estep(data)


def _align(a: PhoneAligner, data: Sequence[tuple[np.ndarray, list[Unit]]]) -> list[np.ndarray]:
    return [a._durations(us, a._path(x, us)[0], us[-1].last + 1) for x, us in data]
