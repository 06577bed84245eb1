#!/usr/bin/env python3
"""This project against OpenNMT-py 3.5.1 and Joey NMT 2.3: the same model trained and decoded
back to back on this machine, as ratios from one run.

    python scripts/bench_peers.py [--steps 150] [--threads 2] [--peers opennmt-py,joeynmt]
                                  [--work ~/.cache/pipeline-bench-peers] [--out bench_peers.json]

Each peer is installed once into its own venv under ``--work`` from the package index, built with
``--system-site-packages`` so that it runs on the torch already installed here (OpenNMT-py 3.5.1
pins torch<2.3: it is installed with ``--no-deps`` and its dependencies added one by one; every
install passes a constraint ``torch==<this torch>``, so pip can never pull another torch).

All three systems get the same data: the pairs ``pipeline.data.prepare`` keeps from Multi30k train
(de-en), already cut into this project's joint 8k sentencepiece pieces and written as
space-separated tokens, with the same 8,000-entry vocabulary; the same architecture as far as each
peer can express it (emb 256, bi-GRU 2x256 encoder, GRU 512 decoder, additive attention; the
differences are listed in docs/performance.md, "Against OpenNMT-py and Joey NMT"); Adam at 1e-3,
label smoothing 0.1, gradient clipping at 1, dropout 0.2, fp32, 4096-token batches, ``--threads``
threads each.

Printed and written to JSON, per system:
* training target tokens/s **as training runs** (each system's own training command, from its own
  log: the median of its per-interval rates over ``--steps`` steps, logged every 10 steps, the
  first interval left out as warm-up).  With the default 150 steps every batch is seen for the
  first time (an epoch is 134 batches), so the figures include each system's first-epoch costs;
* this project in bf16 too, where the CPU has bf16 instructions (AVX512-BF16 or AMX);
* greedy and beam-5 sentences/s of each system's own translate command on test_2016_flickr, from
  the model it has just trained (decoding time as the system reports it, model loading left out),
  with the sacreBLEU of its output and the mean output length in words: an undertrained model's outputs
  differ in length, and decoding time follows the length;
* the ratios of this project against each peer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import BatchConfig, DataConfig, TokenizerConfig  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402
from pipeline.runtime.hardware import cpu_description  # noqa: E402
from pipeline.runtime.precision import bf16_in_hardware  # noqa: E402
from pipeline.training.manifest import git_commit  # noqa: E402

LOG_EVERY = 10  # steps per logged training interval, in every system
SPECIALS = 4  # <pad> <unk> <s> </s>: ids 0-3 of this project's vocabulary; each peer adds its own


@dataclass(frozen=True)
class Peer:
    """A peer toolkit: the wheel to install without its dependencies, then the dependencies it
    imports (its own pins on torch, and on protobuf for Joey NMT, left out: this torch stays)."""

    name: str
    venv: str
    package: str
    deps: tuple[str, ...]
    check: str  # a module whose import proves the install


PEERS = {
    "opennmt-py": Peer(
        "OpenNMT-py 3.5.1",
        "onmt",
        "OpenNMT-py==3.5.1",
        # all of its declared dependencies but torch: onmt.transforms imports every transform at start-up
        (
            "configargparse",
            "ctranslate2>=4,<5",
            "flask",
            "waitress",
            "pyonmttok>=1.37,<2",
            "pyyaml",
            "sacrebleu",
            "rapidfuzz",
            "pyahocorasick",
            "fasttext-wheel",
            "spacy",
            "six",
            "tensorboard",
        ),
        "onmt.bin.train",
    ),
    "joeynmt": Peer(
        "Joey NMT 2.3.0",
        "joey",
        "joeynmt==2.3.0",
        # its runtime imports; its pins on protobuf<3.21 (would break this tensorboard) and its
        # linters and test runner left out
        (
            "future",
            "importlib_metadata",
            "sacremoses",
            "subword-nmt",
            "seaborn",
            "plotly",
            "matplotlib",
            "pyyaml",
            "sacrebleu",
            "sentencepiece",
            "tensorboard",
        ),
        "joeynmt.training",
    ),
}


def run(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run ``cmd``, its stdout and stderr into ``log``; return that text, or stop with the log's tail."""
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        sys.exit(f"bench_peers: {' '.join(map(str, cmd[:4]))} ... failed (exit {proc.returncode}); log {log}:\n{tail}")
    return text


def ensure_venv(work: Path, peer: Peer) -> Path:
    """The peer's venv python, created and installed on first use."""
    python = work / peer.venv / "bin" / "python"
    probe = [str(python), "-c", f"import {peer.check}"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    work.mkdir(parents=True, exist_ok=True)
    constraints = work / "constraints.txt"
    constraints.write_text(f"torch=={torch.__version__}\n")  # pip may not replace this torch
    print(f"installing {peer.name} into {work / peer.venv} (once) ...", flush=True)
    log = work / f"install-{peer.venv}.log"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(work / peer.venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "-c", str(constraints)]
    run(pip + ["--no-deps", peer.package], log)
    run(pip + list(peer.deps), work / f"install-{peer.venv}-deps.log")
    if subprocess.run(probe, capture_output=True).returncode != 0:
        sys.exit(f"bench_peers: {peer.name} installed into {work / peer.venv} but `import {peer.check}` fails")
    return python


def write_corpus(work: Path) -> dict:
    """This project's prepared Multi30k, as space-separated pieces in the peers' file layouts."""
    data = prepare(DataConfig(), TokenizerConfig(), BatchConfig())
    src, tgt = DataConfig().src_lang, DataConfig().tgt_lang
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    tok = data.tokenizer
    for split, table in data.splits.items():
        for lang, sp, column in ((src, tok.src, "src_ids"), (tgt, tok.tgt, "tgt_ids")):
            lines = (" ".join(sp.id_to_piece(ids)) for ids in table[column])
            (out / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    (out / "test.ref").write_text("\n".join(data.splits["test"]["tgt"]) + "\n")
    vocab = tok.tgt.id_to_piece(list(range(SPECIALS, len(tok.tgt))))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")  # Joey NMT: one token per line
    (out / "vocab.onmt").write_text("".join(f"{p}\t1\n" for p in vocab))  # OpenNMT-py: token<TAB>count
    return {
        "dir": out,
        "src": src,
        "tgt": tgt,
        "n_train": len(data.splits["train"]),
        "n_test": len(data.splits["test"]),
        "vocab": len(tok.tgt),
    }


def pieces_to_text(line: str) -> str:
    """Space-separated sentencepiece pieces back to text (what sentencepiece's decode does for them)."""
    return "".join(line.split()).replace("\u2581", " ").strip()


def bleu_and_length(texts: list[str], refs: list[str]) -> tuple[float, float]:
    """sacreBLEU of detokenized ``texts`` and their mean length in words (split on spaces): the
    same measure for every system, whatever its pieces."""
    import sacrebleu

    if len(texts) != len(refs):
        sys.exit(f"bench_peers: {len(texts)} hypotheses for {len(refs)} references")
    return sacrebleu.corpus_bleu(texts, [refs]).score, statistics.mean(len(t.split()) for t in texts)


def interval_median(rates: list[float]) -> float:
    """The median logged rate, the first interval (warm-up: first allocations, kernel set-up) left out."""
    if len(rates) < 2:
        sys.exit("bench_peers: fewer than 2 logged training intervals; raise --steps")
    return statistics.median(rates[1:])


# ---------------------------------------------------------------- OpenNMT-py


def onmt_train(python: Path, corpus: dict, work: Path, steps: int, env: dict) -> float:
    d, s, t = corpus["dir"], corpus["src"], corpus["tgt"]
    run_dir = work / "run-onmt"
    run_dir.mkdir(exist_ok=True)
    config = {
        "save_data": str(run_dir / "data"),
        "src_vocab": str(d / "vocab.onmt"),
        "share_vocab": True,
        "src_vocab_size": corpus["vocab"],
        "tgt_vocab_size": corpus["vocab"],
        "data": {
            "corpus_1": {"path_src": str(d / f"train.{s}"), "path_tgt": str(d / f"train.{t}")},
            "valid": {"path_src": str(d / f"val.{s}"), "path_tgt": str(d / f"val.{t}")},
        },
        "save_model": str(run_dir / "model"),
        "overwrite": True,
        "encoder_type": "brnn",  # bidirectional: enc_hid_size is split over the two directions
        "decoder_type": "rnn",
        "rnn_type": "GRU",
        "enc_layers": 2,
        "dec_layers": 1,
        "word_vec_size": 256,
        "enc_hid_size": 512,
        "dec_hid_size": 512,
        "global_attention": "mlp",  # Bahdanau's additive score
        "input_feed": 1,
        "bridge": True,  # s_0 from the encoder's final state through a layer, as this project's W_s
        "dropout": [0.2],
        "batch_type": "tokens",
        "batch_size": BatchConfig().max_tokens,
        "num_workers": 0,  # a data-loading process would take a core from the two that train
        # one epoch per bucket, as this project batches; the default 262,144 examples would read
        # the 29k-pair corpus nine times over to fill the first bucket
        "bucket_size": corpus["n_train"],
        "optim": "adam",
        "adam_beta2": 0.999,
        "learning_rate": 1e-3,
        "decay_method": "none",
        "label_smoothing": 0.1,
        "max_grad_norm": 1.0,
        "train_steps": steps,
        "valid_steps": 10 * steps,  # no validation inside the timed steps
        "save_checkpoint_steps": steps,
        "report_every": LOG_EVERY,
        "seed": 1234,
        "world_size": 1,
        "gpu_ranks": [],
    }
    cfg = run_dir / "config.yaml"
    cfg.write_text(json.dumps(config, indent=1))  # JSON is YAML
    text = run([str(python), "-m", "onmt.bin.train", "-config", str(cfg)], run_dir / "train.log", env)
    # "Step 20/  150; acc: ...; 1234/ 1180 tok/s; 12 sec;" (source/target tokens per second)
    rates = [float(m.group(1)) for m in re.finditer(r"\d+/\s*(\d+) tok/s", text)]
    return interval_median(rates)


def onmt_decode(python: Path, corpus: dict, work: Path, beam: int, env: dict) -> dict:
    run_dir = work / "run-onmt"
    models = sorted(run_dir.glob("model_step_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    out = run_dir / f"test.beam{beam}.txt"
    cmd = [str(python), "-m", "onmt.bin.translate", "-model", str(models[-1])]
    cmd += ["-src", str(corpus["dir"] / f"test.{corpus['src']}"), "-output", str(out), "-report_time"]
    cmd += ["-beam_size", str(beam), "-batch_type", "sents", "-batch_size", "128" if beam == 1 else "64"]
    cmd += ["-max_length", "200", "-max_length_ratio", "2.0", "-length_penalty", "wu", "-alpha", "0.6"]
    text = run(cmd, run_dir / f"translate.beam{beam}.log", env)
    ms = float(re.search(r"Average translation time \(ms\): ([\d.]+)", text).group(1))
    return {"sentences_per_s": 1000.0 / ms, "hyps": out.read_text().splitlines()}


# ---------------------------------------------------------------- Joey NMT


def joey_config(corpus: dict, work: Path, steps: int, beam: int = 1) -> Path:
    d = corpus["dir"]
    run_dir = work / "run-joey"
    side = {
        "level": "word",  # the pieces are the words: no further tokenisation
        "lowercase": False,
        "max_length": 1000,  # this project's filter already applied
        "voc_file": str(d / "vocab.txt"),
        "voc_limit": corpus["vocab"],
    }
    config = {
        "name": "bench_peers",
        "joeynmt_version": "2.3.0",
        "model_dir": str(run_dir),
        "use_cuda": False,
        "num_workers": 0,
        "random_seed": 1234,
        "data": {
            "train": str(d / "train"),
            "dev": str(d / "val"),
            "test": str(d / "test"),
            "dataset_type": "plain",
            "src": {"lang": corpus["src"], **side},
            "trg": {"lang": corpus["tgt"], **side},
        },
        "testing": {
            "beam_size": beam,
            "beam_alpha": 0.6,  # GNMT length penalty, as this project's decode.length_penalty
            "batch_size": 128 if beam == 1 else 64,
            "batch_type": "sentence",
            "max_output_length": 200,
            "eval_metrics": ["bleu"],
            "load_model": str(run_dir / "best.ckpt"),  # the one validation's, after the timed steps
        },
        "training": {
            "optimizer": "adam",
            "adam_betas": [0.9, 0.999],
            "learning_rate": 1e-3,
            # Joey NMT 2.3 has no constant schedule: an exponential decay by a factor of 1 per epoch
            # is one (its plateau schedule passes ReduceLROnPlateau a `verbose` that torch 2.13 removed)
            "scheduling": "exponential",
            "decrease_factor": 1.0,
            "label_smoothing": 0.1,
            "clip_grad_norm": 1.0,
            "normalization": "tokens",
            "batch_size": BatchConfig().max_tokens,
            "batch_type": "token",
            "updates": steps,  # Joey NMT 2.3 reads "updates" (its config calls it max_updates)
            "epochs": 100,
            "validation_freq": steps,  # one validation, after the timed steps (it writes the checkpoint)
            "logging_freq": LOG_EVERY,
            "eval_metrics": ["bleu"],
            "early_stopping_metric": "loss",
            "overwrite": True,
            "shuffle": True,
            "print_valid_sents": [],
            "keep_best_ckpts": 1,
        },
        "model": {
            "initializer": "xavier_uniform",
            "tied_embeddings": True,  # one joint vocabulary: one embedding table for both sides
            "encoder": {
                "type": "recurrent",
                "rnn_type": "gru",
                "embeddings": {"embedding_dim": 256},
                "hidden_size": 256,
                "bidirectional": True,
                "num_layers": 2,
                "dropout": 0.2,
            },
            "decoder": {
                "type": "recurrent",
                "rnn_type": "gru",
                "embeddings": {"embedding_dim": 256},
                "hidden_size": 512,
                "attention": "bahdanau",
                "num_layers": 1,
                "input_feeding": True,
                "init_hidden": "bridge",
                "dropout": 0.2,
                "hidden_dropout": 0.2,
            },
        },
    }
    path = work / f"joey-beam{beam}.yaml"
    path.write_text(json.dumps(config, indent=1))
    return path


def joey_train(python: Path, corpus: dict, work: Path, steps: int, env: dict) -> float:
    cfg = joey_config(corpus, work, steps)
    text = run([str(python), "-m", "joeynmt", "train", str(cfg)], work / "joey-train.log", env)
    # "Epoch   1, Step:       20, Batch Loss: ..., Batch Acc: ..., Tokens per Sec:     1234, Lr: ..."
    rates = [float(m.group(1)) for m in re.finditer(r"Tokens per Sec:\s*(\d+)", text)]
    return interval_median(rates)


def joey_decode(python: Path, corpus: dict, work: Path, steps: int, beam: int, env: dict) -> dict:
    cfg = joey_config(corpus, work, steps, beam)
    out = work / f"joey-test.beam{beam}"
    cmd = [str(python), "-m", "joeynmt", "test", str(cfg), "-o", str(out)]
    text = run(cmd, work / f"joey-test.beam{beam}.log", env)
    # Joey generates dev and test; the last "Generation took" is test's
    seconds = float(re.findall(r"Generation took ([\d.]+)\[sec\]", text)[-1])
    return {"sentences_per_s": corpus["n_test"] / seconds, "hyps": Path(f"{out}.test").read_text().splitlines()}


# ---------------------------------------------------------------- this project


def ours_train(work: Path, steps: int, precision: str, threads: int, env: dict) -> tuple[float, Path]:
    run_dir = work / f"run-ours-{precision}"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.train",
        "model=bahdanau",
        f"run_dir={run_dir}",
        f"train.precision={precision}",
    ]
    cmd += [f"train.max_steps={steps}", f"train.log_every={LOG_EVERY}", f"train.eval_every={10 * steps}"]
    cmd += ["train.eval_max_sentences=100", f"train.threads={threads}", "train.progress=false"]
    if run_dir.exists():
        subprocess.run(["rm", "-rf", str(run_dir)], check=True)  # a fresh run, not a resumed one
    run(cmd, work / f"ours-train-{precision}.log", env, cwd=REPO)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if r["kind"] == "train"]
    return interval_median(rates), run_dir


def ours_decode(run_dir: Path, beam: int, threads: int, env: dict) -> dict:
    out = run_dir / f"eval-beam{beam}"
    cmd = [sys.executable, "-m", "pipeline.evaluate", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}"]
    cmd += ["split=test", f"decode={'greedy' if beam == 1 else 'beam'}", f"out={out}", f"threads={threads}"]
    run(cmd, run_dir / f"evaluate.beam{beam}.log", env, cwd=REPO)
    report = json.loads(next(out.glob("test.*.json")).read_text())
    return {"sentences_per_s": report["sentences_per_second"], "hyps_text": next(out.glob("test.*.hyp.txt"))}


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="training steps per system (an epoch is 134)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers", default="opennmt-py,joeynmt", help=f"comma-separated, of {', '.join(PEERS)}")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "pipeline-bench-peers")
    parser.add_argument("--out", default="bench_peers.json")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if args.steps < 3 * LOG_EVERY:
        parser.error(
            f"--steps must be at least {3 * LOG_EVERY} (two timed intervals of {LOG_EVERY} after a warm-up one)"
        )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"
    # both peers save their options (an argparse.Namespace, a dict of config) in the checkpoint,
    # which torch >= 2.6's torch.load refuses by default (weights_only=True); the checkpoints are
    # their own, written minutes before, so their translate commands may unpickle them
    peer_env = {**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    pythons = {p: ensure_venv(args.work, PEERS[p]) for p in peers}
    corpus = write_corpus(args.work)
    refs = (corpus["dir"] / "test.ref").read_text().splitlines()
    started = time.time()

    train, decode = {}, {}
    print(f"training this project (fp32, {args.steps} steps) ...", flush=True)
    train["this project"], ours_dir = ours_train(args.work, args.steps, "fp32", args.threads, env)
    if bf16_in_hardware(torch.device("cpu")):
        print(f"training this project (bf16, {args.steps} steps) ...", flush=True)
        train["this project bf16"], _ = ours_train(args.work, args.steps, "bf16", args.threads, env)
    for beam in (1, 5):
        result = ours_decode(ours_dir, beam, args.threads, env)
        bleu, words = bleu_and_length(result["hyps_text"].read_text().splitlines(), refs)
        decode[("this project", beam)] = {"sentences_per_s": result["sentences_per_s"], "bleu": bleu, "words": words}
    for p in peers:
        name = PEERS[p].name
        print(f"training {name} (fp32, {args.steps} steps) ...", flush=True)
        if p == "opennmt-py":
            train[name] = onmt_train(pythons[p], corpus, args.work, args.steps, peer_env)
            decoded = {b: onmt_decode(pythons[p], corpus, args.work, b, peer_env) for b in (1, 5)}
        else:
            train[name] = joey_train(pythons[p], corpus, args.work, args.steps, peer_env)
            decoded = {b: joey_decode(pythons[p], corpus, args.work, args.steps, b, peer_env) for b in (1, 5)}
        for beam, result in decoded.items():
            bleu, words = bleu_and_length([pieces_to_text(h) for h in result["hyps"]], refs)
            decode[(name, beam)] = {"sentences_per_s": result["sentences_per_s"], "bleu": bleu, "words": words}

    ours = train["this project"]
    cpu = cpu_description(args.threads)
    print(f"\ncpu {cpu}; torch {torch.__version__}; {args.steps} steps of {BatchConfig().max_tokens} tokens each")
    for name, tok_s in train.items():
        against = "" if name.startswith("this project") else f"   this project x{ours / tok_s:.2f}"
        if name == "this project bf16":
            against = f"   x{tok_s / ours:.2f} this project fp32"
        print(f"train {name:<20} {tok_s:8.0f} target tok/s{against}")
    for beam in (1, 5):
        base = decode[("this project", beam)]["sentences_per_s"]
        for name in ["this project"] + [PEERS[p].name for p in peers]:
            row = decode[(name, beam)]
            extra = "" if name == "this project" else f"   this project x{base / row['sentences_per_s']:.2f}"
            label = "greedy" if beam == 1 else f"beam-{beam}"
            print(
                f"decode {label:<7} {name:<20} {row['sentences_per_s']:7.1f} sent/s "
                f"(BLEU {row['bleu']:.2f}, {row['words']:.1f} words per output){extra}"
            )
    result = {
        "train_target_tokens_per_s": train,
        "decode_sentences_per_s": {f"{n} beam{b}": v["sentences_per_s"] for (n, b), v in decode.items()},
        "decode_bleu": {f"{n} beam{b}": v["bleu"] for (n, b), v in decode.items()},
        "decode_mean_words": {f"{n} beam{b}": v["words"] for (n, b), v in decode.items()},
        "steps": args.steps,
        "minutes": (time.time() - started) / 60,
        "commit": git_commit(),
        "settings": {"cpu": cpu, "threads": args.threads, "torch": torch.__version__},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
