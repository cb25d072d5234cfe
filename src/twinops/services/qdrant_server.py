"""An external Qdrant server (TWINOPS_QDRANT_URL): whether it answers. twinops never starts one."""

from __future__ import annotations

import httpx


def healthy(url: str, api_key: str | None = None) -> bool:
    """Whether the server answers its health route (``/healthz``) within two seconds."""
    headers = {"api-key": api_key} if api_key else {}
    try:
        return httpx.get(f"{url.rstrip('/')}/healthz", headers=headers, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
