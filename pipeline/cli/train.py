"""``python -m pipeline.train`` (console script ``pipeline-train``): train or resume one run."""

from __future__ import annotations

import json

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("train")
def main(cfg: DictConfig) -> None:
    from pipeline.config import TrainAppConfig, to_object
    from pipeline.training.trainer import train

    summary = train(to_object(cfg, TrainAppConfig))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
