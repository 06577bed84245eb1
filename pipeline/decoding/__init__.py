"""Decoding: batched greedy and beam search, and text in, translations out."""
