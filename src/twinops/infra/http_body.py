"""A request body read up to a limit: a server that reads whatever it is sent can be exhausted by one
client. Shared by the servers that read raw bodies (the RAG server's ``/feedback``, the drift
detector's CloudEvents); kserve's own routes keep kserve's handling."""

from __future__ import annotations

from starlette.requests import Request


def declared_length(request: Request) -> int | None:
    """The request's Content-Length, None when absent (a chunked body) or not a number."""
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def read_bounded_body(request: Request, max_bytes: int) -> bytes | None:
    """The body, or None as soon as it is known to pass ``max_bytes`` (by its Content-Length, or
    while a chunked one streams in): a large body is never held whole."""
    declared = declared_length(request)
    if declared is not None and declared > max_bytes:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
