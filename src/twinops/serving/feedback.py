"""Who may rate an answer: ``POST /feedback`` steers training (the data flywheel), so every vote has
an identity the server vouches for, never one the client names.

Two ways to have one, by setting:

- ``TWINOPS_FEEDBACK_USER_HEADER`` (on a cluster, e.g. ``kubeflow-userid`` or ``x-forwarded-user``):
  the user the gateway authenticated, one vote per user per answer. Only behind a gateway that sets
  the header and strips it from what clients send; anyone who reaches the server directly could
  name any user.
- ``TWINOPS_FEEDBACK_TOKEN`` (locally, from the Secret): ``Authorization: Bearer <token>``, compared
  in constant time; its holder is one voter (``token:<first hex digits of its hash>``).

With both, a request carrying the header votes as that user and one without it needs the token.
With neither, the server takes no feedback (403, saying what to set): open feedback would let
anyone write the preference data the next DPO run learns from.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from http import HTTPStatus

from starlette.requests import Request

# A rating, a corrected answer of MAX_EDITED_ANSWER_CHARS and a comment fit many times over; a body
# larger than this is refused before it is parsed.
MAX_FEEDBACK_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Refusal:
    """Why a request may not vote: the HTTP status and one line for the client."""

    status: HTTPStatus
    message: str


@dataclass(frozen=True)
class FeedbackIdentity:
    """How ``POST /feedback`` learns who votes (see the module docstring)."""

    token: str | None = None
    user_header: str | None = None

    @classmethod
    def from_settings(cls, settings) -> FeedbackIdentity:
        token = settings.feedback_token.get_secret_value() if settings.feedback_token else None
        return cls(token=token or None, user_header=(settings.feedback_user_header or "").lower() or None)

    def voter(self, request: Request) -> str | Refusal:
        """The voter of ``request``, or why it may not vote."""
        if self.user_header:
            user = request.headers.get(self.user_header, "").strip()
            if user:
                return f"user:{user}"
            if not self.token:
                return Refusal(
                    HTTPStatus.UNAUTHORIZED,
                    f"feedback needs an authenticated user (the gateway's {self.user_header} header)",
                )
        if not self.token:
            return Refusal(
                HTTPStatus.FORBIDDEN,
                "this server takes no feedback: set TWINOPS_FEEDBACK_TOKEN (a bearer token from the "
                "Secret) or TWINOPS_FEEDBACK_USER_HEADER (the gateway's authenticated user)",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return Refusal(
                HTTPStatus.UNAUTHORIZED, "feedback needs `Authorization: Bearer <TWINOPS_FEEDBACK_TOKEN>`"
            )
        return "token:" + hashlib.sha256(self.token.encode()).hexdigest()[:12]
