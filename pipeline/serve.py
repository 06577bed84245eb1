"""``python -m pipeline.serve``: :func:`pipeline.cli.serve.main` (console script ``pipeline-serve``)."""

from pipeline.cli.serve import main

if __name__ == "__main__":
    main()
