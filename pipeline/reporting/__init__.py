"""Reporting: the side-by-side comparison, its Markdown/HTML rendering, plots and the alignment gallery."""
