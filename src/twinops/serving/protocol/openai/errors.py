"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, for everything that
goes wrong under ``/openai/``: bad input raised anywhere below a route (``BadRequest``, kserve's
``InvalidInput``), an unknown model, path or method, and a failure in a stream already started
(FastAPI's default ``{"detail": ...}`` and kserve's ``{"error": "..."}`` are for the V1/V2 routes).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from kserve.errors import InvalidInput


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == HTTPStatus.NOT_FOUND:
        kind = "not_found_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(status, message, param=param, code=code))


class OpenAIRoute(APIRoute):
    """A route whose bad input (``BadRequest``, kserve's ``InvalidInput``), raised by the handler or a
    model below it, answers in OpenAI's shape rather than through kserve's app-wide V1/V2 handler."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidInput as error:
                return openai_error(
                    getattr(error, "status", HTTPStatus.BAD_REQUEST),
                    str(error),
                    param=getattr(error, "param", None),
                    code=getattr(error, "code", None),
                )

        return answer
