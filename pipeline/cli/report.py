"""``python -m pipeline.report`` (console script ``pipeline-report``): compare runs side by side."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("report")
def main(cfg: DictConfig) -> None:
    from pipeline.config import ReportAppConfig, to_object
    from pipeline.reporting.render import result_rows
    from pipeline.reporting.report import report

    comparison = report(to_object(cfg, ReportAppConfig))
    for row in result_rows(comparison):
        print("  ".join(f"{c:>18}" for c in row))
    print(f"wrote {comparison['out']}/ (comparison.json, report.md, report.html, figures)")


if __name__ == "__main__":
    main()
