"""``python -m pipeline.evaluate`` (console script ``pipeline-evaluate``): score a checkpoint on a split or files."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("evaluate")
def main(cfg: DictConfig) -> None:
    from pipeline.config import EvaluateAppConfig, to_object
    from pipeline.evaluation.evaluate import evaluate, summary_table

    report = evaluate(to_object(cfg, EvaluateAppConfig))
    print(summary_table(report))
    print("wrote " + " and ".join(report["files"]))


if __name__ == "__main__":
    main()
