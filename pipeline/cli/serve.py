"""``python -m pipeline.serve`` (console script ``pipeline-serve``): a checkpoint behind an HTTP API and a page."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("serve")
def main(cfg: DictConfig) -> None:
    from pipeline.config import ServeAppConfig, to_object
    from pipeline.serving.server import serve

    serve(to_object(cfg, ServeAppConfig))


if __name__ == "__main__":
    main()
