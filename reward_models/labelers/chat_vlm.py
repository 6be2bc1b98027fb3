"""``chat_vlm`` labeler: an OpenAI-compatible chat-completions VLM with RL-VLM-F's two-stage prompt.

Stage 1 (analysis) shows the two images and asks what each shows and whether they differ in achieving
the goal (the task sentence). Stage 2 (labelling) gives that analysis back as text and asks for a single
line: 0 (goal better achieved in Image 1), 1 (in Image 2) or -1 (unsure / no difference). Parsing is
strict: anything else is asked again, then is a LabelerError naming the endpoint, model and reply.

A segment longer than one step is shown as one image: its frames side by side, earliest first.
Confidence is 1 for every answer (a chat reply carries no calibrated probability).
Endpoint, model and key come from the config, whose defaults read ``RL_VLM_BASE_URL``,
``RL_VLM_MODEL`` and the variable named by ``api_key_env`` (the key itself is never stored).
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robot_learning.data.store import EpisodeStore
from reward_models.frames import camera_key, read_rows
from reward_models.labelers.base import CANT_TELL, FIRST, SECOND, Labeler, Labels, Pairs, register
from reward_models.labelers.chat_client import ChatClient, ResponseCache

INTRO = "Consider the following two images:\nImage 1:"
SEQUENCE_NOTE = "Each image shows a short sequence of camera frames, left to right, earliest first.\n"
QUESTIONS = ("1. What is shown in Image 1?\n"
             "2. What is shown in Image 2?\n"
             "3. The goal is: {task}. Is there any difference between Image 1 and Image 2 in terms of achieving the goal?")
LABEL_PROMPT = ("Based on the text below, which answers the questions:\n{questions}\n\n{analysis}\n\n"
                "Is the goal better achieved in Image 1 or Image 2?\n"
                "Reply a single line of 0 if the goal is better achieved in Image 1, or 1 if it is better achieved "
                "in Image 2.\nReply -1 if the text is unsure or there is no difference.")
ANSWERS = {"0": FIRST, "1": SECOND, "-1": CANT_TELL}


@dataclass
class ChatVlmConfig:
    """configs/labeler/chat_vlm.yaml."""

    # Base URL of the OpenAI-compatible API (…/v1); requests go to <base_url>/chat/completions.
    base_url: str = "https://api.openai.com/v1"
    # Vision model that answers the analysis prompt (stage 1).
    model: str = "gpt-4o"
    # Model that turns the analysis into 0/1/-1 (stage 2); null = the same model.
    summary_model: str | None = None
    # Name of the environment variable holding the API key (unset: no Authorization header).
    api_key_env: str = "OPENAI_API_KEY"
    # Camera observation key; null = the task's first camera.
    camera: str | None = None
    # Frames are resized to this many pixels square before sending (RL-VLM-F sent 300-360 px); null = as stored.
    image_size: int | None = 256
    # Sampling temperature (0: the most reproducible answers).
    temperature: float = 0.0
    # Reply length limit of each request.
    max_tokens: int = 1000
    # Seconds to wait for one HTTP response.
    timeout_s: float = 60.0
    # Retries of a request after HTTP 429/5xx, a timeout or a connection error.
    max_retries: int = 6
    # First back-off delay (s); doubles each retry.
    backoff_s: float = 1.0
    # Longest back-off delay (s).
    max_backoff_s: float = 60.0
    # Client-side rate limit over all workers (requests per minute; 0 = none).
    requests_per_minute: float = 60.0
    # Queries in flight at once.
    workers: int = 4
    # Times an unusable reply is asked again before the run stops with an error.
    parse_retries: int = 2
    # Response cache directory; null = <preferences dir>/vlm_cache.
    cache_dir: str | None = None


def parse_analysis(reply: str) -> str:
    """Stage 1 reply: any non-empty text."""
    if not reply.strip():
        raise ValueError("expected an analysis of the two images, found an empty reply")
    return reply.strip()


def parse_choice(reply: str) -> int:
    """Stage 2 reply: its first non-empty line must be 0, 1 or -1 (surrounding markdown/period tolerated)."""
    lines = [ln.strip().strip("*`'\". ") for ln in reply.splitlines() if ln.strip()]
    if not lines or lines[0] not in ANSWERS:
        raise ValueError(f"expected a single line 0, 1 or -1, found {reply.strip()[:160]!r}")
    return ANSWERS[lines[0]]


def png(frames: np.ndarray, size: int | None) -> bytes:
    """PNG bytes of frames (L, H, W, 3) side by side, each resized to ``size`` px square."""
    tiles = [Image.fromarray(f) for f in frames]
    if size:
        tiles = [t.resize((size, size), Image.Resampling.BICUBIC) for t in tiles]
    canvas = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


@register
class ChatVlmLabeler(Labeler):
    name = "chat_vlm"
    Config = ChatVlmConfig

    def __init__(self, cfg: ChatVlmConfig, store: EpisodeStore, workdir: Path):
        super().__init__(cfg, store, workdir)
        self.camera = camera_key(store, cfg.camera, "labeler 'chat_vlm'")
        cache = ResponseCache(Path(cfg.cache_dir) if cfg.cache_dir else self.workdir / "vlm_cache")
        key = os.environ.get(cfg.api_key_env) or None
        common = dict(timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                      max_backoff_s=cfg.max_backoff_s, requests_per_minute=cfg.requests_per_minute)
        self.client = ChatClient(cfg.base_url, cfg.model, key, cache, **common)
        self.summary_client = (self.client if not cfg.summary_model or cfg.summary_model == cfg.model
                               else ChatClient(cfg.base_url, cfg.summary_model, key, cache, **common))
        self.questions = QUESTIONS.format(task=store.spec.text)

    def usage(self) -> dict[str, int]:
        """HTTP requests sent (retries included) and answers taken from the response cache."""
        clients = {id(c): c for c in (self.client, self.summary_client)}.values()
        return {"requests": sum(c.requests for c in clients), "cache_hits": sum(c.cache_hits for c in clients)}

    def ask(self, image1: bytes, image2: bytes, sequence: bool) -> int:
        """One query through both stages: analysis of the two images, then its 0/1/-1 summary."""
        settings = dict(temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens,
                        parse_retries=self.cfg.parse_retries)
        intro = (SEQUENCE_NOTE if sequence else "") + INTRO
        analysis = self.client.complete([intro, image1, "Image 2:", image2, self.questions], parse_analysis, **settings)
        prompt = LABEL_PROMPT.format(questions=self.questions, analysis=analysis)
        return self.summary_client.complete([prompt], parse_choice, **settings)

    def label(self, pairs: Pairs) -> Labels:
        first = read_rows(self.store, f"obs/{self.camera}", pairs.rows("first").reshape(-1))
        second = read_rows(self.store, f"obs/{self.camera}", pairs.rows("second").reshape(-1))
        shape = (len(pairs), pairs.length, *first.shape[1:])
        first, second = first.reshape(shape), second.reshape(shape)

        def one(i: int) -> int:
            return self.ask(png(first[i], self.cfg.image_size), png(second[i], self.cfg.image_size), pairs.length > 1)

        with ThreadPoolExecutor(max_workers=max(1, self.cfg.workers)) as pool:
            choice = np.fromiter(pool.map(one, range(len(pairs))), dtype=np.int8, count=len(pairs))
        return Labels(choice, np.ones(len(pairs), np.float32))

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "camera": self.camera, "prompt": {"intro": INTRO, "questions": self.questions,
                                                                          "label": LABEL_PROMPT}}
