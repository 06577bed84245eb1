"""Subword links of the training pairs, for guided-alignment training (Chen et al. 2016).

Marian's ``--guided-alignment`` and fairseq's alignment training take links computed by a
statistical aligner on the *subword-segmented* training text, so that each link joins a source
piece and a target piece, the units attention works on.  Here eflomal aligns the piece ids of
the filtered train split (both directions, grow-diag-final-and; :mod:`pipeline.alignment.statistical`)
once; the links are cached in ``<data.cache_dir>/guided/`` under the split's fingerprint and the
aligner's settings, so a second run, or a resumed one, reads the same links.

:meth:`GuidedLinks.targets` turns a batch's links into the guided attention targets: row i of
sentence b is the uniform distribution over the source pieces linked to target piece i (the
row that predicts y_i, read with s_{i-1}: Bahdanau et al. 2015, eq. 6), and a row without links
is all zeros, so it adds nothing to the loss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

from pipeline.alignment.statistical import align_with_eflomal
from pipeline.config import EflomalConfig


@dataclass
class GuidedLinks:
    """Links of every training row: row r's are ``links[offsets[r]:offsets[r + 1]]``, (source, target) pieces."""

    offsets: np.ndarray  # [N + 1] int64
    links: np.ndarray  # [M, 2] int32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def targets(self, rows: Sequence[int], src_len: int, tgt_len: int) -> torch.Tensor:
        """``[B, tgt_len, src_len]`` float32: each linked row sums to 1, unlinked rows are 0."""
        out = np.zeros((len(rows), tgt_len, src_len), dtype=np.float32)
        for b, r in enumerate(rows):
            pairs = self.links[self.offsets[r] : self.offsets[r + 1]]
            out[b, pairs[:, 1], pairs[:, 0]] = 1.0
        out /= np.maximum(out.sum(axis=2, keepdims=True), 1.0)
        return torch.from_numpy(out)


def guided_links(train: datasets.Dataset, settings: EflomalConfig, cache_dir: str | Path) -> tuple[GuidedLinks, bool]:
    """(links of every row of ``train``, whether they came from the cache)."""
    key = hashlib.sha256(f"{train._fingerprint}-{json.dumps(asdict(settings), sort_keys=True)}".encode()).hexdigest()
    path = Path(cache_dir) / "guided" / f"train-{key[:16]}.npz"
    if path.exists():
        with np.load(path) as saved:
            return GuidedLinks(saved["offsets"], saved["links"]), True
    src = [" ".join(map(str, ids)) for ids in train["src_ids"]]
    tgt = [" ".join(map(str, ids)) for ids in train["tgt_ids"]]
    sentences = align_with_eflomal(src, tgt, [], settings).symmetrised
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in sentences])
    links = np.array([link for s in sentences for link in sorted(s)], dtype=np.int32).reshape(-1, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, offsets=offsets, links=links)
    os.replace(partial, path)  # readers never see half a file
    return GuidedLinks(offsets, links), False
