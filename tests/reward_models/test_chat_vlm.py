"""The chat_vlm labeler against a local server speaking the chat-completions protocol.

The server answers from a script: a function of the request number and body returning
(status, body). It counts requests, so the tests can check exactly how many queries reach it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from robot_learning.data.store import EpisodeStore
from robot_learning.spec import SpecError
from reward_models.labelers import LabelerError, Pairs, build_labeler
from reward_models.labelers.chat_client import RateLimiter
from reward_models.labeling import Sampling, label_store
from reward_models.preferences import PreferenceDataset

Script = Callable[[int, dict], tuple[int, object]]


def completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def answer(label: str = "1") -> Script:
    """Stage 1 (images in the message) gets an analysis naming the images, stage 2 (text only) gets ``label``."""
    def script(n: int, body: dict) -> tuple[int, object]:
        images = [p["image_url"]["url"] for p in body["messages"][0]["content"] if p["type"] == "image_url"]
        if not images:
            return 200, completion(label)
        digest = hashlib.sha256("".join(images).encode()).hexdigest()[:8]
        return 200, completion(f"Image 2 shows the fingertip closer to the ball (pair {digest}).")
    return script


class Server:
    """A chat-completions server on 127.0.0.1 answering from ``script``; records every request."""

    def __init__(self, script: Script):
        self.script = script
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.ok = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                status, payload = outer.script(len(outer.requests), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                if status == 200:
                    outer.ok += 1
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def labeler_for(store_path, url, tmp_path, **changes):
    cfg = {"name": "chat_vlm", "base_url": url, "model": "test-vlm", "api_key_env": "TEST_VLM_KEY", "image_size": 32,
           "max_retries": 3, "backoff_s": 0.001, "max_backoff_s": 0.01, "requests_per_minute": 0, "workers": 1,
           "timeout_s": 5, **changes}
    return build_labeler(cfg, EpisodeStore.open(store_path), tmp_path / "prefs")


PAIRS = Pairs(np.array([0, 12]), np.array([9, 25]))


def test_two_stage_answers_with_images_and_key(image_store, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_VLM_KEY", "sk-test")
    with Server(answer("1")) as server:
        labels = labeler_for(image_store, server.url, tmp_path).label(PAIRS)
    assert labels.choice.tolist() == [1, 1] and labels.confidence.tolist() == [1.0, 1.0]
    assert len(server.requests) == 4
    stage1, stage2 = server.requests[0], server.requests[1]
    images = [p for p in stage1["messages"][0]["content"] if p["type"] == "image_url"]
    assert len(images) == 2 and images[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "make the image bright" in stage1["messages"][0]["content"][-1]["text"]
    assert "fingertip closer" in stage2["messages"][0]["content"][0]["text"]
    assert stage1["model"] == "test-vlm" and stage1["temperature"] == 0.0
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("reply,expected", [("0", 0), ("-1", -1), ("**1**\nbecause the arm is closer", 1), ("1.", 1)])
def test_label_replies_parse(image_store, tmp_path, reply, expected):
    with Server(answer(reply)) as server:
        assert labeler_for(image_store, server.url, tmp_path).label(PAIRS[:1]).choice.tolist() == [expected]


def test_malformed_answers_are_asked_again_then_fail(image_store, tmp_path):
    with Server(answer("Image 2 seems better, I think")) as server:
        with pytest.raises(LabelerError, match=r"model test-vlm\): expected a single line 0, 1 or -1, found 'Image 2 "
                                               r"seems better, I think'; still unusable after 3 attempts"):
            labeler_for(image_store, server.url, tmp_path, parse_retries=2).label(PAIRS[:1])
    assert len(server.requests) == 1 + 3

    def garbled_once(n, body):
        return (200, b"{not json") if n == 1 else answer("0")(n, body)
    with Server(garbled_once) as server:
        assert labeler_for(image_store, server.url, tmp_path / "b").label(PAIRS[:1]).choice.tolist() == [0]
    assert len(server.requests) == 3


def test_429_then_success(image_store, tmp_path):
    def throttled(n, body):
        return (429, {"error": {"message": "rate limited"}}) if n <= 2 else answer("0")(n, body)
    with Server(throttled) as server:
        assert labeler_for(image_store, server.url, tmp_path).label(PAIRS[:1]).choice.tolist() == [0]
    assert len(server.requests) == 4


def test_500s_until_give_up(image_store, tmp_path):
    with Server(lambda n, body: (500, {"error": "boom"})) as server:
        with pytest.raises(LabelerError, match=r"gave up after 4 attempts; last error: HTTP 500"):
            labeler_for(image_store, server.url, tmp_path, max_retries=3).label(PAIRS[:1])
    assert len(server.requests) == 4


def test_client_error_is_not_retried(image_store, tmp_path):
    with Server(lambda n, body: (401, {"error": "bad key"})) as server:
        with pytest.raises(LabelerError, match=r"found HTTP 401 \(not retried\)"):
            labeler_for(image_store, server.url, tmp_path).label(PAIRS[:1])
    assert len(server.requests) == 1


def test_interrupted_run_resumes_from_cache_without_repeating_queries(image_store, tmp_path):
    store = EpisodeStore.open(image_store)
    prefs = PreferenceDataset(store, tmp_path / "prefs")
    sampling = Sampling(queries=6, seed=3)
    healthy = answer("1")

    def dies_after_five(n, body):
        return healthy(n, body) if n <= 5 else (500, {"error": "down"})
    with Server(dies_after_five) as server:
        with pytest.raises(LabelerError, match="gave up"):
            label_store(labeler_for(image_store, server.url, tmp_path, max_retries=0), prefs, sampling, chunk=4)
    assert server.ok == 5 and len(prefs.load()) == 0
    with Server(healthy) as server:
        summary = label_store(labeler_for(image_store, server.url, tmp_path), prefs, sampling, chunk=4)
        assert summary["answered_now"] == 6 and len(prefs.load()) == 6
        assert server.ok == 2 * 6 - 5
        assert summary["requests"] == 2 * 6 - 5 and summary["cache_hits"] == 5
        again = label_store(labeler_for(image_store, server.url, tmp_path), prefs, sampling, chunk=4)
        assert again["answered_now"] == 0 and again["requests"] == 0 and server.ok == 2 * 6 - 5
    run = prefs.runs[0]
    assert run["labeler"]["labeler"] == "chat_vlm" and run["labeler"]["config"]["model"] == "test-vlm"
    assert "sk-" not in json.dumps(prefs.runs)


def test_chat_vlm_needs_a_camera(lowdim_store, tmp_path):
    with pytest.raises(SpecError, match=r"expected a camera \(kind: rgb\) for labeler 'chat_vlm'"):
        labeler_for(lowdim_store, "http://127.0.0.1:9/v1", tmp_path)


def test_rate_limiter_spaces_requests():
    now, slept = [0.0], []
    limiter = RateLimiter(120, clock=lambda: now[0], sleep=slept.append)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.5, 1.0]
