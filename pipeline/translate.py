"""``python -m pipeline.translate``: :func:`pipeline.cli.translate.main` (console script ``pipeline-translate``)."""

from pipeline.cli.translate import main

if __name__ == "__main__":
    main()
