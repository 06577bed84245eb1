"""Symmetrisation of two directional word alignments: grow-diag-final-and (Koehn et al. 2005).

A directional aligner (IBM models, HMM, eflomal) links each word of one side to at most one
word of the other, so each direction misses the links of one-to-many translations.  The usual
remedy, and the one Moses, fast_align's ``atools`` and eflomal's users apply, starts from the
links both directions agree on (high precision) and adds links only from their union (high
recall) where they touch a link already kept and cover a word left unaligned:

1. **intersection** of the two directions;
2. **grow-diag**: while anything changes, add each union link that is a neighbour (the 8 cells
   around, diagonals included) of a kept link and whose source or target word is still
   unaligned;
3. **final-and**: add each remaining link of either direction whose source *and* target words
   are both still unaligned.

Links are ``(source word, target word)`` pairs, 0-indexed, both directions given in that order.
"""

from __future__ import annotations

from collections.abc import Iterable

Link = tuple[int, int]
NEIGHBOURS = [(-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


def grow_diag_final_and(forward: Iterable[Link], reverse: Iterable[Link]) -> set[Link]:
    """One sentence's symmetrised links from its forward and reverse links (see the module docstring)."""
    fwd, rev = set(forward), set(reverse)
    union = fwd | rev
    kept = fwd & rev
    src_aligned = {s for s, _ in kept}
    tgt_aligned = {t for _, t in kept}

    def add(link: Link) -> None:
        kept.add(link)
        src_aligned.add(link[0])
        tgt_aligned.add(link[1])

    grown = True
    while grown:
        grown = False
        for s, t in sorted(kept):
            for ds, dt in NEIGHBOURS:
                near = (s + ds, t + dt)
                if near in union and near not in kept and (near[0] not in src_aligned or near[1] not in tgt_aligned):
                    add(near)
                    grown = True
    for direction in (fwd, rev):
        for s, t in sorted(direction):
            if s not in src_aligned and t not in tgt_aligned:
                add((s, t))
    return kept
