"""Alignment: attention as word alignments (merge, hard links, Pharaoh), AER against gold, the align command."""
