"""Structured logs without a dependency: one JSON object per line (time, level, logger, message, and
request_id and other `extra=` fields when given; trace_id and span_id when the record was made inside a
span, see observability.otel.install_log_ids), or the classic text line. Either way, anything that looks
like a credential (gw_live_ keys, sk- keys, Bearer tokens) is masked before it is written. Request content
(prompts) is never logged, unless an operator sets `log_prompts` (then at DEBUG, see log_request_content)."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from json import dumps
from typing import Any

__all__ = ["configure_logging", "JsonFormatter", "MaskingFormatter", "mask_secrets", "log_request_content"]

_SECRETS = (
    (re.compile(r"(?<![A-Za-z0-9])(gw_[A-Za-z]+_)[A-Za-z0-9_\-]{6,}"), r"\1***"),
    (re.compile(r"(?<![A-Za-z0-9])(sk-)[A-Za-z0-9_\-]{6,}"), r"\1***"),
    (re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 ***"),
)
# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_FIRST = ("request_id", "trace_id")


def mask_secrets(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _clean(value: Any) -> Any:
    """A JSON value with every string masked."""
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return mask_secrets(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        for key in _FIRST:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = _clean(value)
        ids = getattr(record, "_gw_trace_ids", None)
        if ids is not None:
            out.setdefault("trace_id", ids[0])
            out["span_id"] = ids[1]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = _clean(value)
        if record.exc_info:
            out["exception"] = mask_secrets(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = mask_secrets(self.formatStack(record.stack_info))
        return dumps(out, ensure_ascii=False)


class MaskingFormatter(logging.Formatter):
    """The text format, with credentials masked."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = getattr(record, "_gw_trace_ids", None)
        if ids is not None:
            text += f" trace_id={ids[0]} span_id={ids[1]}"
        return mask_secrets(text)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so calling it again replaces it."""


def configure_logging(level: str, json: bool) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else
                         MaskingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())


def log_request_content(logger: logging.Logger, request_id: str, model: str, body: dict[str, Any]) -> None:
    """With `log_prompts: true`: a request's messages (or, for other operations, its input or prompt) at DEBUG,
    with anything that looks like a credential masked."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    content = {k: body[k] for k in ("messages", "input", "prompt", "system") if k in body}
    logger.debug("request %s content for %s: %s", request_id, model, dumps(_clean(content), ensure_ascii=False),
                 extra={"request_id": request_id})
