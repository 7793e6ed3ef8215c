"""What stands between the network and the verifier: security headers on every answer, a per-client
rate limit, an early refusal of bodies declared too large, and the bounded verify queue."""

from __future__ import annotations

import html
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")

# The page needs its own stylesheet, script and data: thumbnails; nothing else, from nowhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
PAGE_ERROR = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Anima verify</title>'
    '<link rel="stylesheet" href="/static/anima.css"></head><body><main>'
    '<p class="error" role="alert" id="error">{detail}</p><p><a href="/">Back</a></p></main></body></html>'
)
# Paths people reach with a browser: refusals there are pages, not JSON.
PAGE_PATHS = ("/", "/verify", "/docs")
# Idle clients are forgotten once this many are tracked, so the limiter's memory stays bounded.
MAX_TRACKED_CLIENTS = 10_000


async def send_error(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = (), *, page: bool = False
) -> None:
    """Answer from inside a middleware: ``{"detail": ...}`` for tools, a short page for people."""
    if page:
        body = PAGE_ERROR.format(detail=html.escape(detail)).encode()
        kind = b"text/html; charset=utf-8"
    else:
        body, kind = json.dumps({"detail": detail}).encode(), b"application/json"
    start_headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start_headers + list(headers)})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """CSP, nosniff, no framing, no referrer and no caching on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, with_headers)


class RateLimiter:
    """A token bucket per client address: ``per_minute`` requests in a burst, refilled evenly."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Take one request for ``client``: 0.0 when allowed, else the seconds until it would be."""
        rate = self.per_minute / 60.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                self._forget_idle(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / rate

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) <= MAX_TRACKED_CLIENTS:
            return
        full_after = 60.0  # a bucket idle this long is full again: forgetting it changes nothing
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        while len(self._buckets) > MAX_TRACKED_CLIENTS:  # a flood of fresh addresses: drop the oldest
            self._buckets.pop(next(iter(self._buckets)))


class RateLimit:
    """429 with ``Retry-After`` once a client address is over its rate (static files exempt)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter | None) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.limiter is not None and not scope["path"].startswith("/static/"):
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.limiter.take(client)
            if wait > 0:
                retry = str(max(1, math.ceil(wait))).encode()
                page = scope["path"] in PAGE_PATHS
                await send_error(
                    send, 429, "too many requests; slow down", [(b"retry-after", retry)], page=page
                )
                return
        await self.app(scope, receive, send)


class Refused(Exception):
    """A request refused with an HTTP status and a one-line reason."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class BodyLimit:
    """413 for a body over its path's limit: at once when its declared length says so (before a
    byte is read), else as soon as the bytes streamed in pass it (chunked bodies)."""

    def __init__(self, app: ASGIApp, max_body: int, upload_paths: set[str], max_small_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self.upload_paths = upload_paths
        self.max_small_body = max_small_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body if scope["path"] in self.upload_paths else self.max_small_body
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared and (not declared.isdigit() or int(declared) > limit):
            page = scope["path"] in PAGE_PATHS
            await send_error(send, 413, f"request body larger than {limit} bytes", page=page)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise Refused(413, f"request body larger than {limit} bytes")
            return message

        await self.app(scope, counted, send)


class QueueFull(Exception):
    """Every worker is busy and the queue is full."""


class VerifyQueue:
    """At most ``workers`` verifications run (threads), and at most ``queue`` more requests wait;
    a request beyond those is refused at once, so nothing grows without bound."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.limiter = anyio.CapacityLimiter(workers)
        self.held = 0
        self.seconds_per_check = 1.0  # a moving average, for Retry-After

    def retry_after(self) -> int:
        """Seconds until the requests held now have likely been answered (a moving average of a
        check's time): what a 503 asks a client to wait before trying again."""
        return max(1, math.ceil(self.seconds_per_check * self.capacity / self.workers))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A place in the queue for one request, from its first byte to its answer."""
        if self.held >= self.capacity:
            raise QueueFull
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work`` on a worker thread; a client that goes away does not stop it, and the
        request's clean-up waits for it (the upload is never removed under a running check)."""

        def timed() -> T:
            start = time.monotonic()
            try:
                return work(*args)
            finally:
                seconds = time.monotonic() - start
                self.seconds_per_check = 0.8 * self.seconds_per_check + 0.2 * seconds

        return await anyio.to_thread.run_sync(timed, limiter=self.limiter)
