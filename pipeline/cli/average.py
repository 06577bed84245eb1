"""``python -m pipeline.average`` (console script ``pipeline-average``): average a run's checkpoints."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("average")
def main(cfg: DictConfig) -> None:
    from pipeline.config import AverageAppConfig, to_object
    from pipeline.training.averaging import average

    c = to_object(cfg, AverageAppConfig)
    done = average(c.run_dir, c.last, c.best, c.out)
    bleus = ", ".join("-" if b is None else f"{b:.2f}" for b in done["val_bleu"])
    print(f"averaged {len(done['steps'])} checkpoints ({done['selection']}; steps {done['steps']}, val BLEU {bleus})")
    print(f"wrote {done['path']}")


if __name__ == "__main__":
    main()
