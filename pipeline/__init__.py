"""A seq2seq translation pipeline: RNN encoder-decoder with Bahdanau attention vs a no-attention baseline."""

__version__ = "0.1.0"
