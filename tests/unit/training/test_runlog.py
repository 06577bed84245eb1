"""metrics.jsonl read back after kills, damage and replacement: records kept, the rest skipped and said."""

from __future__ import annotations

import json
import logging

from pipeline.training.runlog import read_metrics, truncate_metrics

RECORDS = [{"kind": "train", "step": 2, "loss": 5.1}, {"kind": "val", "step": 3, "bleu": 1.5, "note": "ü"}]


def _write(path, tail: bytes = b"") -> None:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS).encode() + tail)


def test_a_last_line_torn_by_a_kill_is_dropped_without_a_warning(tmp_path, caplog):
    _write(tmp_path / "m.jsonl", b'{"kind": "val", "st')
    with caplog.at_level(logging.WARNING):
        assert read_metrics(tmp_path / "m.jsonl") == RECORDS
    assert not caplog.records


def test_damage_inside_the_file_is_skipped_and_warned_about_once(tmp_path, caplog):
    path = tmp_path / "m.jsonl"
    bad = b'\xff\xfe not json\n[1, 2]\n{"kind": "val", "step": 4}\n{"step": "five"}\n'  # a val record needs a BLEU
    _write(path, bad + b'{"kind": "train", "step": 6}\n')
    with caplog.at_level(logging.WARNING):
        assert read_metrics(path) == [*RECORDS, {"kind": "train", "step": 6}]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 4 of 7 lines are not records of this pipeline; skipped them"
    ]


def test_truncating_for_a_resume_keeps_the_intact_records_up_to_the_step_byte_for_byte(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, b"garbage\n" + json.dumps({"kind": "train", "step": 9}).encode() + b"\n")
    truncate_metrics(path, 3)
    expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS)
    assert path.read_text(encoding="utf-8") == expected
