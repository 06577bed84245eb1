"""``python -m pipeline.align`` (console script ``pipeline-align``): attention heatmaps, Pharaoh links and AER."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.cli.app import hydra_command


@hydra_command("align")
def main(cfg: DictConfig) -> None:
    from pipeline.alignment.align import align
    from pipeline.config import AlignAppConfig, to_object

    summary = align(to_object(cfg, AlignAppConfig))
    if "diagnostics" in summary:
        d = summary["diagnostics"]
        print(
            f"aligned {summary['aligned']} sentences, plotted {summary['plotted']}: mean entropy "
            f"{d['mean_entropy']:.2f}, EOS mass {d['eos_mass']:.2f}, monotonicity {d['monotonicity']:.2f}, "
            f"coverage {d['coverage']:.2f}"
        )
        if summary["aer"]:
            print(aer_line("attention", summary["aer"]))
        print(f"wrote {summary['out']}/ (index.html, alignments.txt, diagnostics.json, heatmaps)")
    eflomal = summary if summary.get("method") == "eflomal" else summary.get("eflomal")
    if eflomal and "error" not in eflomal:
        n, train, secs = eflomal["sentences"], eflomal["training_pairs"], eflomal["seconds"]
        print(f"eflomal aligned {n} pairs beside {train:,} of training in {secs:.0f} s")
        if "model" in eflomal:
            print(aer_line("eflomal (grow-diag-final-and)", eflomal))
        print(f"wrote {eflomal['out']}/ (alignments.txt, alignments.forward.txt, alignments.reverse.txt)")


def aer_line(name: str, aer: dict) -> str:
    """``name AER a (precision p, recall r); diagonal baseline AER d``."""
    m, diag = aer["model"], aer["diagonal_baseline"]
    return (
        f"{name}: AER {m['aer']:.3f} (precision {m['precision']:.3f}, recall {m['recall']:.3f}); "
        f"diagonal baseline AER {diag['aer']:.3f}"
    )


if __name__ == "__main__":
    main()
