"""Load the checkpoint once and serve it on uvicorn (``python -m pipeline.serve``)."""

from __future__ import annotations

import logging
import socket

from pipeline.config import ServeAppConfig
from pipeline.decoding.translate import decode_in_bf16, load_model
from pipeline.errors import UserError

log = logging.getLogger(__name__)


def serve(cfg: ServeAppConfig) -> None:
    """Serve until interrupted; the address in use or a bad checkpoint is a one-line error."""
    import uvicorn  # the server stack loads only for this command

    from pipeline.serving.app import build_app

    restored = load_model(cfg.checkpoint, cfg.device, cfg.threads, cfg.impl, cfg.decode.quantize, cfg.weights)
    bf16 = decode_in_bf16(cfg.precision, cfg.decode.quantize, restored.device)
    app = build_app(restored, cfg.decode, bf16, cfg.limits, cfg.batch_window_ms, cfg.batch_sentences)
    try:
        sock = socket.create_server((cfg.host, cfg.port))
    except OSError as err:
        raise UserError(f"cannot listen on {cfg.host}:{cfg.port} ({err.strerror}); choose another port=") from None
    # replies go out at once: without it, Nagle's algorithm holds a reply's body until the client's
    # delayed ACK of its headers, ~40 ms a request on Linux (accepted connections inherit the option)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host, port = sock.getsockname()[:2]
    print(f"serving {restored.config['model']['name']} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
