"""What the two sentence-transformers servers share (``serving.embedder``, ``serving.reranker``).

Both run their model in a worker thread, one call at a time (the CPU has no room for two), and
take whole lists per call, so a request with many documents or texts is one batched forward pass.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kserve import Model

from twinops.serving.protocol.errors import BadRequest

MAX_TEXTS = 2048


class EncoderModel(Model):
    """A sentence-transformers model run in a worker thread, one call at a time."""

    def __init__(self, name: str, model_dir: str, *, label: str | None = None):
        super().__init__(name)
        self.model_dir = model_dir
        self.label = label or model_dir
        self.model: Any = None
        self.embedder: Any = None
        self._lock = threading.Lock()

    async def _run(self, function, *args):
        def locked():
            with self._lock:
                return function(*args)

        return await asyncio.get_running_loop().run_in_executor(None, locked)

    @staticmethod
    def _check_texts(texts: list[str], what: str) -> None:
        if not texts:
            raise BadRequest(f"{what} is empty: send at least one text", param=what)
        if len(texts) > MAX_TEXTS:
            raise BadRequest(
                f"{what} has {len(texts)} texts: send at most {MAX_TEXTS} per request", param=what
            )
