"""The HTTP API: ``POST /translate``, ``GET /health``, ``GET /info`` and the page at ``/``.

The model is loaded once (:func:`pipeline.decoding.translate.load_model`) and every search
runs through one :class:`~pipeline.serving.batcher.DynamicBatcher`.  Input is checked
before it reaches the model, each failure answered with a 4xx status and a JSON body
``{"error": "<one line>"}``: a body over ``limits.max_body_bytes`` (413), bytes that are not
UTF-8 or not JSON (400), a wrong type, an unknown field or decode mode, an empty text, a
``beam_size`` out of range (422), too many sentences or pieces (413).  A request not answered
within ``limits.timeout_s`` gets 503; an error inside the search gets 500 for the requests
of that batch, and the server goes on.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import DecodeConfig, ServeLimits, Strategy, as_plain_dict
from pipeline.decoding.translate import attention_record, translate_lines
from pipeline.serving.batcher import DynamicBatcher
from pipeline.serving.page import serve_page
from pipeline.training.checkpoint import Restored


class TranslateRequest(BaseModel):
    """The body of ``POST /translate``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | list[str]
    decode: Literal["greedy", "beam"] | None = None  # None: the server's decode config
    beam_size: int | None = Field(default=None, ge=1)


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is over ``limit`` bytes: never read whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body has {declared} bytes, more than limits.max_body_bytes={limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, f"the body has more than limits.max_body_bytes={limit} bytes")
    return bytes(body)


def parse_request(body: bytes) -> TranslateRequest:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(400, f"the body is not valid UTF-8 (byte {err.start}); send UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadRequest(400, f"the body is not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    try:
        return TranslateRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(422, f"{where}: {first['msg']}") from None


class Translator:
    """What the routes share: the model, its decoding defaults, the limits and the batcher."""

    def __init__(self, restored: Restored, decode: DecodeConfig, bf16: bool, limits: ServeLimits) -> None:
        self.restored, self.decode_cfg, self.bf16, self.limits = restored, decode, bf16, limits

    def settings(self, req: TranslateRequest) -> DecodeConfig:
        strategy = Strategy(req.decode) if req.decode else Strategy(self.decode_cfg.strategy)
        beam = req.beam_size if req.beam_size is not None else self.decode_cfg.beam_size
        if strategy is Strategy.beam and beam > self.limits.max_beam_size:
            raise BadRequest(422, f"beam_size: {beam} is over limits.max_beam_size={self.limits.max_beam_size}")
        return replace(self.decode_cfg, strategy=strategy, beam_size=beam if strategy is Strategy.beam else 1)

    def check_texts(self, req: TranslateRequest) -> list[str]:
        texts = [req.text] if isinstance(req.text, str) else list(req.text)
        if not texts:
            raise BadRequest(422, "text: give a sentence or a non-empty list of them")
        if len(texts) > self.limits.max_sentences:
            raise BadRequest(
                413, f"text: {len(texts)} sentences, more than limits.max_sentences={self.limits.max_sentences}"
            )
        for i, text in enumerate(texts):
            where = "text" if isinstance(req.text, str) else f"text.{i}"
            if not text.strip():
                raise BadRequest(422, f"{where}: the text is empty")
            if "\n" in text or "\r" in text:
                raise BadRequest(422, f"{where}: one sentence per item, without line breaks")
            n = len(self.restored.tokenizer.src.encode([text])[0])
            if n > self.limits.max_input_tokens:
                raise BadRequest(
                    413, f"{where}: {n} pieces, more than limits.max_input_tokens={self.limits.max_input_tokens}"
                )
        return texts

    def decode(self, texts: list[str], key: tuple) -> list[dict]:
        """Runs on the batcher's worker thread: one search over ``texts``."""
        cfg = replace(self.decode_cfg, strategy=Strategy(key[0]), beam_size=key[1])
        result = translate_lines(self.restored, texts, cfg, self.bf16)
        out = []
        for i, text in enumerate(texts):
            record = attention_record(i + 1, text, result, i, self.restored)
            record.pop("line")
            out.append({**record, "src_words": text.split(), "tgt_words": record["translation"].split()})
        return out


def info(restored: Restored, limits: ServeLimits, decode: DecodeConfig) -> dict:
    """``GET /info``: the model, tokenizer, training run and the BLEU of the run's evaluations."""
    config, path = restored.config, restored.path.resolve()
    run_dir = path.parent.parent
    evaluations = {}
    for result in sorted((run_dir / "eval").glob("*.json")):
        try:
            scores = json.loads(result.read_text(encoding="utf-8"))
            evaluations[result.stem] = {k: scores.get(k) for k in ("bleu", "chrf", "ter", "n_sentences", "step")}
        except (OSError, json.JSONDecodeError):
            continue
    tok = restored.tokenizer
    return {
        "model": config["model"],
        "has_attention": bool(restored.model.has_attention),
        "tokenizer": {**config.get("tokenizer", {}), "src_pieces": len(tok.src), "tgt_pieces": len(tok.tgt)},
        "data": {k: config["data"].get(k) for k in ("name", "src_lang", "tgt_lang")},
        "run": {"run_dir": str(run_dir), "checkpoint": str(path), "step": restored.step, "weights": restored.weights},
        "ensemble": [str(m.path) for m in restored.members],
        "evaluations": evaluations,
        "decode": as_plain_dict(decode),
        "limits": as_plain_dict(limits),
    }


def build_app(
    restored: Restored, decode: DecodeConfig, bf16: bool, limits: ServeLimits, window_ms: float, batch_sentences: int
) -> FastAPI:
    """The ASGI app for ``restored`` (tests drive it in-process; ``pipeline.serve`` runs it on uvicorn)."""
    translator = Translator(restored, decode, bf16, limits)
    batcher = DynamicBatcher(translator.decode, batch_sentences, window_ms / 1000.0)
    about = info(restored, limits, decode)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="seq2seq translation", lifespan=lifespan)

    @app.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            req = parse_request(await read_body(request, limits.max_body_bytes))
            cfg = translator.settings(req)
            texts = translator.check_texts(req)
        except BadRequest as err:
            return _error(err.status, str(err))
        key = (Strategy(cfg.strategy).value, cfg.beam_size)
        try:
            results = await asyncio.wait_for(batcher.submit(texts, key), limits.timeout_s)
        except TimeoutError:
            return _error(503, f"not answered within limits.timeout_s={limits.timeout_s:g} s; try again later")
        except Exception as err:  # noqa: BLE001 - a failed search is this request's 500, not the server's end
            return _error(500, f"decoding failed ({type(err).__name__}: {str(err)[:200]})")
        body = {"translations": results, "decode": key[0], "beam_size": key[1]}
        return JSONResponse({**body, "ms": round(1000 * (time.perf_counter() - t0), 2)})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "uptime_s": round(time.time() - started, 1), "searches": batcher.batches}

    @app.get("/info")
    async def get_info() -> dict:
        return about

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return serve_page(about)

    return app
