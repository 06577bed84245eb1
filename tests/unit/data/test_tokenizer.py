"""Tests for pipeline.data.tokenizer: deterministic cached training, round trips, special ids, joint/separate."""

from __future__ import annotations

import io
import re

import pytest
import sentencepiece as spm

from pipeline.config import SpmType, TokenizerConfig
from pipeline.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    SentencePiece,
    Tokenizer,
    build_tokenizer,
    train_model,
    train_or_load,
)
from pipeline.errors import UserError

N_TRAIN = 300


@pytest.fixture(scope="module")
def corpus(multi30k) -> dict[str, list[str]]:
    return {lang: multi30k("train", lang, N_TRAIN) for lang in ("de", "en")}


@pytest.fixture(scope="module")
def joint_model(corpus) -> SentencePiece:
    return SentencePiece(train_model(corpus["de"] + corpus["en"], TokenizerConfig(vocab_size=400)))


@pytest.mark.parametrize("kind", list(SpmType))
def test_training_is_deterministic(corpus, kind):
    cfg = TokenizerConfig(type=kind, vocab_size=300)
    first = train_model(corpus["de"], cfg)
    assert first == train_model(corpus["de"], cfg)
    assert len(SentencePiece(first)) == 300


def test_train_or_load_reuses_the_cache(corpus, tmp_path):
    cfg = TokenizerConfig(vocab_size=300)
    blob, reused = train_or_load(corpus["en"], cfg, tmp_path, "joint")
    assert reused is False
    assert len(list((tmp_path / "spm").glob("joint-*.model"))) == 1
    again, reused = train_or_load(corpus["en"], cfg, tmp_path, "joint")
    assert reused is True and again == blob
    # other text, other options or another tag are other models, never the cached one
    assert train_or_load(corpus["en"][:-1] + ["A different last line."], cfg, tmp_path, "joint")[1] is False
    assert train_or_load(corpus["en"], TokenizerConfig(vocab_size=301), tmp_path, "joint")[1] is False
    assert train_or_load(corpus["en"], TokenizerConfig(vocab_size=300, type=SpmType.bpe), tmp_path, "joint")[1] is False
    assert train_or_load(corpus["en"], cfg, tmp_path, "tgt")[1] is False
    assert len(list((tmp_path / "spm").glob("*.model"))) == 5
    assert not list((tmp_path / "spm").glob("*.tmp*")), "no temporary files left behind"


def test_round_trip_of_held_out_text(joint_model, corpus, multi30k):
    seen = set("".join(corpus["de"] + corpus["en"]))
    held_out = [s for s in multi30k("val", "de", 50) + multi30k("val", "en", 50) if set(s) <= seen]
    assert len(held_out) > 50
    ids = joint_model.encode(held_out)
    assert all(ids_i and min(ids_i) > EOS_ID for ids_i in ids), "normal text has no special or unknown ids"
    assert joint_model.decode(ids) == held_out


def test_special_ids(joint_model):
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert joint_model.id_to_piece([PAD_ID, UNK_ID, BOS_ID, EOS_ID]) == ["<pad>", "<unk>", "<s>", "</s>"]
    sp = joint_model.sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    # a character never seen in training maps to UNK
    assert UNK_ID in joint_model.encode(["Ein Hund \u4e2d"])[0]
    # decode ignores BOS/EOS/PAD around (and padding after) a sentence
    ids = joint_model.encode(["Zwei Hunde spielen im Schnee."])[0]
    assert joint_model.decode([[BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]]) == ["Zwei Hunde spielen im Schnee."]


def test_model_with_other_special_ids_is_rejected(corpus):
    buf = io.BytesIO()
    # sentencepiece's defaults: unk=0, bos=1, eos=2, no pad
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus["en"]), model_writer=buf, vocab_size=200, minloglevel=2
    )
    with pytest.raises(UserError, match="unexpected special ids"):
        SentencePiece(buf.getvalue())


def test_joint_vocabulary(corpus, tmp_path):
    tok, reused = build_tokenizer(corpus["de"], corpus["en"], TokenizerConfig(vocab_size=400, joint=True), tmp_path)
    assert reused is False
    assert tok.joint and tok.src is tok.tgt
    assert tok.state()["tgt"] is None
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["joint.model"]
    restored = Tokenizer.from_state(tok.state())
    assert restored.joint and restored.src.model_bytes == tok.src.model_bytes
    # the same model encodes both languages
    assert tok.src.encode(corpus["en"][:5]) == tok.tgt.encode(corpus["en"][:5])
    tok2, reused = build_tokenizer(corpus["de"], corpus["en"], TokenizerConfig(vocab_size=400, joint=True), tmp_path)
    assert reused is True and tok2.src.model_bytes == tok.src.model_bytes


def test_separate_vocabularies(corpus, tmp_path):
    cfg = TokenizerConfig(vocab_size=300, joint=False)
    tok, reused = build_tokenizer(corpus["de"], corpus["en"], cfg, tmp_path)
    assert reused is False
    assert not tok.joint
    assert len(tok.src) == 300 and len(tok.tgt) == 300
    assert tok.src.model_bytes != tok.tgt.model_bytes
    # each model is trained on its own language only: it encodes that language more compactly
    de_by_src = sum(map(len, tok.src.encode(corpus["de"])))
    de_by_tgt = sum(map(len, tok.tgt.encode(corpus["de"])))
    en_by_src = sum(map(len, tok.src.encode(corpus["en"])))
    en_by_tgt = sum(map(len, tok.tgt.encode(corpus["en"])))
    assert de_by_src < de_by_tgt and en_by_tgt < en_by_src
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["src.model", "tgt.model"]
    restored = Tokenizer.from_state(tok.state())
    assert not restored.joint and restored.tgt.model_bytes == tok.tgt.model_bytes
    _, reused = build_tokenizer(corpus["de"], corpus["en"], cfg, tmp_path)
    assert reused is True


@pytest.mark.parametrize("kind", list(SpmType))
def test_too_large_vocab_size_is_a_user_error_with_a_usable_bound(corpus, kind):
    text = corpus["en"][:60]
    with pytest.raises(UserError) as info:
        train_model(text, TokenizerConfig(type=kind, vocab_size=20000))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("tokenizer.vocab_size=20000 is too large")
    bound = re.search(r"set tokenizer\.vocab_size to at most (\d+)$", msg)
    assert bound, msg
    # the suggested value works
    assert len(SentencePiece(train_model(text, TokenizerConfig(type=kind, vocab_size=int(bound[1]))))) == int(bound[1])


def test_training_uses_only_the_first_train_sentences(corpus):
    """tokenizer.train_sentences bounds sentencepiece's in-memory input to the first N sentences."""
    capped = train_model(iter(corpus["en"]), TokenizerConfig(vocab_size=200, train_sentences=60))
    first = train_model(corpus["en"][:60], TokenizerConfig(vocab_size=200, train_sentences=0))
    everything = train_model(corpus["en"], TokenizerConfig(vocab_size=200, train_sentences=0))
    assert capped == first != everything


def test_cache_key_is_the_text_the_trainer_sees(corpus, tmp_path):
    """A cap above the corpus size changes nothing, so it keeps the cached model; text past a binding cap is ignored."""
    blob, _ = train_or_load(corpus["en"], TokenizerConfig(vocab_size=200), tmp_path, "joint")
    roomy = TokenizerConfig(vocab_size=200, train_sentences=len(corpus["en"]) + 1)
    assert train_or_load(corpus["en"], roomy, tmp_path, "joint") == (blob, True)
    capped = TokenizerConfig(vocab_size=200, train_sentences=60)
    assert train_or_load(corpus["en"], capped, tmp_path, "joint")[1] is False
    assert train_or_load(corpus["en"][:60] + ["Never seen by the trainer."], capped, tmp_path, "joint")[1] is True
