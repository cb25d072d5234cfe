"""Bad input in any protocol: a 4xx with one clear line, and the server keeps serving.

``BadRequest`` subclasses kserve's ``InvalidInput``, so kserve's own V1/V2 handlers answer it with
400 ``{"error": "..."}`` and the OpenAI routes answer it in OpenAI's error shape (with its
``status``, ``param`` and ``code``).
"""

from __future__ import annotations

from http import HTTPStatus

from kserve.errors import InvalidInput


class BadRequest(InvalidInput):
    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = HTTPStatus.BAD_REQUEST,
        code: str | None = None,
    ):
        super().__init__(message)
        self.param = param
        self.status = int(status)
        self.code = code
