"""``python -m pipeline.align`` (console script ``pipeline-align``): attention heatmaps, Pharaoh links and AER."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("align")
def main(cfg: DictConfig) -> None:
    from pipeline.alignment.align import align
    from pipeline.config import AlignAppConfig, to_object

    summary = align(to_object(cfg, AlignAppConfig))
    d = summary["diagnostics"]
    print(
        f"aligned {summary['aligned']} sentences, plotted {summary['plotted']}: mean entropy {d['mean_entropy']:.2f}, "
        f"EOS mass {d['eos_mass']:.2f}, monotonicity {d['monotonicity']:.2f}, coverage {d['coverage']:.2f}"
    )
    if summary["aer"]:
        m, diag = summary["aer"]["model"], summary["aer"]["diagonal_baseline"]
        print(
            f"AER {m['aer']:.3f} (precision {m['precision']:.3f}, recall {m['recall']:.3f}); "
            f"diagonal baseline AER {diag['aer']:.3f}"
        )
    print(f"wrote {summary['out']}/ (index.html, alignments.txt, diagnostics.json, heatmaps)")


if __name__ == "__main__":
    main()
