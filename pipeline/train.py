"""``python -m pipeline.train``: :func:`pipeline.cli.train.main` (console script ``pipeline-train``)."""

from pipeline.cli.train import main

if __name__ == "__main__":
    main()
