"""``python -m pipeline.average``: :func:`pipeline.cli.average.main` (console script ``pipeline-average``)."""

from pipeline.cli.average import main

if __name__ == "__main__":
    main()
