"""``python -m pipeline.evaluate``: :func:`pipeline.cli.evaluate.main` (console script ``pipeline-evaluate``)."""

from pipeline.cli.evaluate import main

if __name__ == "__main__":
    main()
