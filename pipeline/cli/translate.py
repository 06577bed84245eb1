"""``python -m pipeline.translate`` (console script ``pipeline-translate``): translate lines with a checkpoint."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("translate")
def main(cfg: DictConfig) -> None:
    from pipeline.config import TranslateAppConfig, to_object
    from pipeline.decoding.translate import translate

    translate(to_object(cfg, TranslateAppConfig))


if __name__ == "__main__":
    main()
