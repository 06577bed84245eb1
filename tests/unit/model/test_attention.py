"""The attention interface (pipeline/model/attention.py) as a user meets it: a class in their own
file, named by ``model.attention_class``, trains, decodes and gets its history; a class that does
not meet the interface is refused in one line saying what is missing."""

from __future__ import annotations

import textwrap
import uuid

import pytest
import torch

from pipeline.data.batching import collate
from pipeline.data.tokenizer import PAD_ID
from pipeline.decoding.search import beam_search, greedy_search
from pipeline.errors import UserError
from pipeline.model import ModelConfig, build_model
from pipeline.model.config import AttentionPlacement, DecoderConfig, EncoderConfig

VOCAB = 30

HISTORY_RECORDER = """
import torch
from torch import nn
from pipeline.model.attention import masked_softmax

class Recorder(nn.Module):
    '''Additive-like scores that also see the previous weights; records every history it was given.'''
    seen = []

    def __init__(self, query_dim, key_dim, attn_dim):
        super().__init__()
        self.q = nn.Linear(query_dim, attn_dim)
        self.k = nn.Linear(key_dim, attn_dim)
        self.loc = nn.Parameter(torch.tensor(0.5))

    def precompute(self, states):
        return self.k(states)

    def forward(self, query, keys, mask, history):
        Recorder.seen.append((history.previous.clone(), history.cumulative.clone()))
        energies = torch.tanh(keys + self.q(query).unsqueeze(1)).sum(-1) + self.loc * history.previous
        return masked_softmax(energies, mask)
"""

STATELESS = """
import torch
from torch import nn
from pipeline.model.attention import masked_softmax

class Bilinear(nn.Module):
    def __init__(self, query_dim, key_dim, attn_dim):
        super().__init__()
        self.W = nn.Bilinear(query_dim, key_dim, 1, bias=False)

    def forward(self, query, keys, mask):
        b, s, _ = keys.shape
        energies = self.W(query.unsqueeze(1).expand(b, s, -1).contiguous(), keys).squeeze(-1)
        return masked_softmax(energies, mask)
"""


def user_module(tmp_path, monkeypatch, source: str) -> str:
    """Write ``source`` as a fresh module in the user's folder (on sys.path); return its name."""
    name = f"user_attention_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def tiny(attention_class: str, placement: AttentionPlacement = AttentionPlacement.bahdanau) -> ModelConfig:
    cfg = ModelConfig(
        emb_dim=16,
        dropout=0.0,
        encoder=EncoderConfig(hidden_dim=16, layers=1, dropout=0.0),
        decoder=DecoderConfig(hidden_dim=32, readout_dim=16),
        attention_class=attention_class,
    )
    cfg.attention.dim = 24
    cfg.attention.placement = placement
    return cfg


def batch():
    g = torch.Generator().manual_seed(3)
    pairs = [(torch.randint(4, VOCAB, (n,), generator=g).tolist(), [5, 6, 7, 8][: n - 1]) for n in (5, 3, 2)]
    return collate([p[0] for p in pairs], [p[1] for p in pairs], [0, 1, 2])


@pytest.mark.parametrize("placement", list(AttentionPlacement))
def test_a_user_class_with_history_trains_and_decodes(tmp_path, monkeypatch, placement):
    module = __import__(name := user_module(tmp_path, monkeypatch, HISTORY_RECORDER))
    torch.manual_seed(0)
    model = build_model(tiny(f"{name}.Recorder", placement), VOCAB, VOCAB, PAD_ID)
    b = batch()
    module.Recorder.seen.clear()
    loss, attn = model(b.src, b.src_lens, b.tgt_in, b.tgt_out, 0.1)
    loss.backward()
    assert model.decoder.context.attention.loc.grad is not None  # the history term is trained
    seen = module.Recorder.seen
    assert len(seen) == b.tgt_in.shape[1]
    assert (seen[0][0] == 0).all() and (seen[0][1] == 0).all()  # zeros at the first step
    for i in range(1, len(seen)):
        torch.testing.assert_close(seen[i][0], attn[:, i - 1].detach())  # α_{i-1}
        torch.testing.assert_close(seen[i][1], attn[:, :i].detach().sum(1))  # Σ_{k<i} α_k
    model.eval()
    with torch.no_grad():
        logits, attn = model(b.src, b.src_lens, b.tgt_in)
        state = model.start(model.encode(b.src, b.src_lens))
        for t in range(b.tgt_in.shape[1]):  # search's step computes what teacher forcing did
            lo, state, a = model.step(b.tgt_in[:, t], state)
            torch.testing.assert_close(lo, logits[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(a, attn[:, t])
    greedy = greedy_search(model, b.src, b.src_lens, 10, 2.0)
    beams = beam_search(model, b.src, b.src_lens, 3, 0.0, 10, 2.0, nbest=3)  # beams reorder the history
    assert len(greedy) == 3 and all(len(h) == 3 for h in beams)
    assert all(h.attention.shape == (len(h.tokens) + 1, int(n)) for h, n in zip(greedy, b.src_lens))


def test_a_stateless_user_class_needs_no_precompute(tmp_path, monkeypatch):
    name = user_module(tmp_path, monkeypatch, STATELESS)
    model = build_model(tiny(f"{name}.Bilinear"), VOCAB, VOCAB, PAD_ID)
    b = batch()
    loss, attn = model(b.src, b.src_lens, b.tgt_in, b.tgt_out)
    loss.backward()
    assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:2]), atol=1e-5)
    assert (attn[~b.src_mask.unsqueeze(1).expand_as(attn)] == 0).all()


# Each row: a class body that breaks the interface, and what the one-line error must say.
BROKEN = [
    ("class Broken:\n    pass", "not a torch.nn.Module"),
    ("class Broken(nn.Module):\n    def __init__(self, query_dim, key_dim):\n        super().__init__()", "attn_dim"),
    (
        "class Broken(nn.Module):\n    def __init__(self, **dims):\n        super().__init__()\n"
        "    def forward(self, query, keys, mask):\n        return keys.sum(-1).abs().masked_fill(~mask, 0.0)",
        "sum to 1",
    ),
    (
        "class Broken(nn.Module):\n    def __init__(self, **dims):\n        super().__init__()\n"
        "    def forward(self, query, keys, mask):\n        return torch.softmax(keys.sum(-1), -1)",
        "0 where mask is False",
    ),
    (
        "class Broken(nn.Module):\n    def __init__(self, **dims):\n        super().__init__()\n"
        "    def forward(self, query, keys, mask):\n        return masked_softmax(keys.sum(-1), mask).unsqueeze(1)",
        "[B, S]",
    ),
    (
        "class Broken(nn.Module):\n    def __init__(self, **dims):\n        super().__init__()\n"
        "    def forward(self, query, keys):\n        return keys.sum(-1)",
        "(query, keys, mask)",
    ),
    (
        "class Broken(nn.Module):\n    def __init__(self, **dims):\n        super().__init__()\n"
        "    def forward(self, query, keys, mask):\n        return query @ keys",
        "failed on a test batch",
    ),
]


@pytest.mark.parametrize("body, needle", BROKEN, ids=[n for _, n in BROKEN])
def test_a_class_that_breaks_the_interface_gets_one_line(tmp_path, monkeypatch, body, needle):
    header = "import torch\nfrom torch import nn\nfrom pipeline.model.attention import masked_softmax\n\n"
    name = user_module(tmp_path, monkeypatch, header + body)
    with pytest.raises(UserError, match=None) as err:
        build_model(tiny(f"{name}.Broken"), VOCAB, VOCAB, PAD_ID)
    message = str(err.value)
    assert needle in message and "\n" not in message and f"{name}.Broken" in message


@pytest.mark.parametrize(
    "path, needle",
    [
        ("no_such_module_here.Attention", "cannot import no_such_module_here"),
        ("os.NoSuchClass", "os has no class NoSuchClass"),
        ("Attention", "must be module.Class"),
    ],
)
def test_a_path_that_names_no_class_gets_one_line(path, needle):
    with pytest.raises(UserError, match="model.attention_class") as err:
        build_model(tiny(path), VOCAB, VOCAB, PAD_ID)
    assert needle in str(err.value)
