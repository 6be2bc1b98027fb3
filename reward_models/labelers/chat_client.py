"""A minimal OpenAI-compatible chat-completions client for image+text prompts (standard library only).

- Images travel as base64 ``data:image/png`` URLs inside the user message.
- Retries: HTTP 429, 5xx, timeouts and connection errors are retried with exponential back-off
  (``backoff_s * 2**attempt``, capped, with jitter; a server's ``Retry-After`` is honoured); other 4xx
  fail at once with the server's message.
- Client-side rate limiting: requests are spaced to at most ``requests_per_minute`` (shared by threads).
- A response cache on disk keyed by (model, prompt text, image hashes, sampling settings): one JSON file
  per answer, written atomically, so a re-run costs nothing and an interrupted run resumes without
  repeating a query. The base URL and the API key are not part of the key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from reward_models.labelers.base import LabelerError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A prompt is a sequence of parts: text, or PNG-encoded image bytes, in order.
Part = str | bytes


class ResponseCache:
    """Answers on disk, one file per key: ``<root>/<key[:2]>/<key>.json``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        if not path.exists():
            return None
        return json.loads(path.read_text())["content"]

    def put(self, key: str, content: str, payload: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"content": content, "request": payload}))
        os.replace(tmp, path)


class RateLimiter:
    """Spaces calls at least ``60 / requests_per_minute`` seconds apart across threads (0 = unlimited)."""

    def __init__(self, requests_per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


class ChatClient:
    """POSTs chat completions to ``<base_url>/chat/completions``; see the module docstring for the policy."""

    def __init__(self, base_url: str, model: str, api_key: str | None, cache: ResponseCache, *,
                 timeout_s: float = 60.0, max_retries: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 requests_per_minute: float = 0.0, sleep: Callable[[float], None] = time.sleep):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.cache = cache
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self.sleep = sleep
        self.requests = 0
        self.cache_hits = 0
        self._count_lock = threading.Lock()

    def _messages(self, parts: Sequence[Part], hashed: bool) -> list[dict[str, Any]]:
        content = []
        for part in parts:
            if isinstance(part, bytes):
                url = (f"sha256:{hashlib.sha256(part).hexdigest()}" if hashed
                       else "data:image/png;base64," + base64.b64encode(part).decode())
                content.append({"type": "image_url", "image_url": {"url": url}})
            else:
                content.append({"type": "text", "text": part})
        return [{"role": "user", "content": content}]

    def complete(self, parts: Sequence[Part], parse: Callable[[str], T], *, temperature: float = 0.0,
                 max_tokens: int = 1000, parse_retries: int = 2) -> T:
        """``parse`` of the assistant's reply to one user message made of ``parts``.

        A cached reply is used when there is one. ``parse`` raises ValueError on an unusable reply; the
        question is then asked again (``parse_retries`` times) and only a usable reply is cached.
        """
        settings = {"model": self.model, "temperature": temperature, "max_tokens": max_tokens}
        key_payload = {**settings, "messages": self._messages(parts, hashed=True)}
        key = self.cache.key(key_payload)
        cached = self.cache.get(key)
        if cached is not None:
            with self._count_lock:
                self.cache_hits += 1
            return parse(cached)
        body = json.dumps({**settings, "messages": self._messages(parts, hashed=False)}).encode()
        problem = ""
        for attempt in range(parse_retries + 1):
            content = self._post(body)
            try:
                value = parse(content)
            except ValueError as e:
                problem = str(e)
                log.warning("chat_vlm: unusable reply (attempt %d/%d): %s", attempt + 1, parse_retries + 1, problem)
                continue
            self.cache.put(key, content, key_payload)
            return value
        raise LabelerError(f"chat_vlm: {self.url} (model {self.model}): {problem}; still unusable after "
                           f"{parse_retries + 1} attempts")

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            with self._count_lock:
                self.requests += 1
            retry_after = None
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                try:
                    return _reply_text(raw)
                except ValueError as e:
                    last = f"malformed response ({e})"
            except urllib.error.HTTPError as e:
                text = e.read().decode(errors="replace")[:300]
                if e.code != 429 and e.code < 500:
                    raise LabelerError(f"chat_vlm: {self.url}: expected a chat completion, found HTTP {e.code} "
                                       f"(not retried): {text}") from None
                last = f"HTTP {e.code}: {text}"
                retry_after = _seconds(e.headers.get("Retry-After"))
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt == self.max_retries:
                break
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * (1 + 0.1 * random.random())
            delay = max(delay, retry_after or 0.0)
            log.warning("chat_vlm: %s (attempt %d/%d); retrying in %.1f s", last, attempt + 1, self.max_retries + 1, delay)
            self.sleep(delay)
        raise LabelerError(f"chat_vlm: {self.url}: expected a chat completion, gave up after "
                           f"{self.max_retries + 1} attempts; last error: {last}")


def _reply_text(raw: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions response (string or list of text parts)."""
    try:
        data = json.loads(raw)
        content = data["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"no choices[0].message.content: {type(e).__name__} in {raw[:200]!r}") from None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise ValueError(f"message content is {type(content).__name__}, not text")
    return content


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
