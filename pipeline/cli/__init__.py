"""The Hydra entry points, one small module per command (see :mod:`pipeline.cli.app`)."""
