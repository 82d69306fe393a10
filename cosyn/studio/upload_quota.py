"""A quota on uploads, enforced before Gradio stores a byte (Gradio limits only the size of one file).

Gradio's upload route carries no session, so the quota is per client address, over a sliding hour,
plus a cap on what the studio's upload folder may hold at all: ten 20 MB uploads from anyone who can
reach the port then meet a clear refusal (HTTP 413 with the reason) instead of filling the disk.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

WINDOW_S = 3600.0
FOLDER_CHECK_S = 10.0  # the folder's size is summed at most this often


class UploadQuota:
    """ASGI middleware: refuses POSTs to Gradio's upload route beyond the quota."""

    def __init__(self, app: Any, folder: Path, per_client_bytes: int, folder_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.folder = app, Path(folder)
        self.per_client_bytes, self.folder_bytes, self.clock = per_client_bytes, folder_bytes, clock
        self._sent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._folder_size, self._folder_checked = 0, -FOLDER_CHECK_S
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/upload"):
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            client = (scope.get("client") or ("unknown",))[0]
            reason = self.refusal(client, int(length)) if length and length.isdigit() else \
                "an upload must say its size (Content-Length)"
            if reason:
                await _refuse(send, reason)
                return
        await self.app(scope, receive, send)

    def refusal(self, client: str, size: int) -> str | None:
        """Why an upload of `size` bytes from `client` is refused now, or None (and it is counted)."""
        now = self.clock()
        with self._lock:
            sent = self._sent[client]
            while sent and sent[0][0] < now - WINDOW_S:
                sent.popleft()
            used = sum(b for _, b in sent)
            if used + size > self.per_client_bytes:
                return (f"upload quota: {used / 2**20:.0f} MB sent in the last hour, and this {size / 2**20:.1f} MB "
                        f"upload would pass the {self.per_client_bytes / 2**20:.0f} MB per hour allowed")
            if self._stored(now) + size > self.folder_bytes:
                return (f"the studio's upload space ({self.folder_bytes / 2**20:.0f} MB) is full; uploads are "
                        "accepted again as old ones expire (hourly)")
            sent.append((now, size))
            self._folder_size += size
            return None

    def _stored(self, now: float) -> int:
        if now - self._folder_checked >= FOLDER_CHECK_S:
            files = (p for p in self.folder.rglob("*") if p.is_file()) if self.folder.is_dir() else ()
            self._folder_size = sum(p.stat().st_size for p in files)
            self._folder_checked = now
        return self._folder_size


async def _refuse(send: Callable, reason: str) -> None:
    body = json.dumps({"detail": reason}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
