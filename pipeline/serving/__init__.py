"""``python -m pipeline.serve``: a checkpoint behind an HTTP API, and a page that shows its attention."""
