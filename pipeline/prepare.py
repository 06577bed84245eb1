"""``python -m pipeline.prepare``: :func:`pipeline.cli.prepare.main` (console script ``pipeline-prepare``)."""

from pipeline.cli.prepare import main

if __name__ == "__main__":
    main()
