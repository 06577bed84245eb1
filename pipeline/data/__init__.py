"""Corpus -> tokens -> batches: loading through `datasets`, sentencepiece, token-budgeted batching."""
