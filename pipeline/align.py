"""``python -m pipeline.align``: :func:`pipeline.cli.align.main` (console script ``pipeline-align``)."""

from pipeline.cli.align import main

if __name__ == "__main__":
    main()
