"""One training manifest from several: real speakers mixed with the synthetic demo corpus, for a fine-tune that
should not forget what the earlier data taught.

    python -m tts.mix data/real_voices/train.jsonl data/corpus/train.jsonl --out data/real_voices_mix/train.jsonl
        [--heldout data/real_voices/heldout.txt]

Rows keep their order (the first manifest's, then the next's). A row id that appears again is dropped when the
row is the same and refused when it differs (two clips under one id would share one latent). A speaker id in
two manifests is refused: cross-sentence pairs (tts.data.PromptTargetDataset) would take one as the prompt of the
other. Rows of held-out speakers (``--heldout``, tts.real_voices' heldout.txt) are refused, as tts.train does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from tts.manifests import Utterance, read_jsonl, speaker_map, write_jsonl
from tts.real_voices import check_no_heldout, read_heldout


def mix(manifests: Sequence[Sequence[Utterance]], names: Sequence[str] | None = None) -> list[Utterance]:
    """The rows of all manifests, in order, each id once (see the module docstring for what is refused)."""
    names = list(names or [f"manifest {i}" for i in range(len(manifests))])
    out: list[Utterance] = []
    seen: dict[str, Utterance] = {}
    owner: dict[str, str] = {}  # speaker -> the manifest it came from
    for name, rows in zip(names, manifests):
        for r in rows:
            if r.id in seen:
                if seen[r.id] != r:
                    raise ValueError(f"row id {r.id!r} of {name} names another clip than before: rename one")
                continue
            first = owner.setdefault(r.speaker, name)
            if first != name:
                raise ValueError(
                    f"speaker {r.speaker!r} is in {first} and in {name}: one id for two voices would pair "
                    "them as one speaker; rename the speakers of one manifest"
                )
            seen[r.id] = r
            out.append(r)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", help="JSONL manifests, in order")
    p.add_argument("--out", required=True, help="the mixed JSONL")
    p.add_argument("--heldout", help="held-out speaker list (tts.real_voices' heldout.txt): refused")
    a = p.parse_args(argv)
    if len(a.manifests) < 2:
        p.error("give at least two manifests to mix")
    for m in a.manifests:
        if not Path(m).is_file():
            p.error(f"manifest {m} not found")
    try:
        rows = mix([read_jsonl(m) for m in a.manifests], a.manifests)
        if a.heldout:
            check_no_heldout(rows, read_heldout(a.heldout))
    except ValueError as e:
        p.exit(2, f"tts.mix: {e}\n")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    n = write_jsonl(rows, a.out)
    hours = sum(r.duration for r in rows) / 3600
    print(f"wrote {n} utterances ({hours:.2f} h, {len(speaker_map(rows))} speakers) to {a.out}")


if __name__ == "__main__":
    main()
