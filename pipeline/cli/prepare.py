"""``python -m pipeline.prepare`` (console script ``pipeline-prepare``): load, filter, tokenize and cache a corpus."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("prepare")
def main(cfg: DictConfig) -> None:
    from pipeline.config import BatchConfig, DataConfig, TokenizerConfig, TrainConfig, to_object
    from pipeline.data.prepare import prepare

    data = prepare(
        to_object(cfg.data, DataConfig, "data"),
        to_object(cfg.tokenizer, TokenizerConfig, "tokenizer"),
        to_object(cfg.batch, BatchConfig, "batch"),
        to_object(cfg.train, TrainConfig, "train").guided_alignment.links_settings(),
    )
    print(data.stats.table())


if __name__ == "__main__":
    main()
