"""``python -m pipeline.report``: :func:`pipeline.cli.report.main` (console script ``pipeline-report``)."""

from pipeline.cli.report import main

if __name__ == "__main__":
    main()
