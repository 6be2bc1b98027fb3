"""Preference labelers: ``clip`` (open_clip zero-shot), ``chat_vlm`` (OpenAI-compatible VLM), ``oracle`` (simulator)."""

from reward_models.labelers import chat_vlm, clip, oracle  # noqa: F401  (register the labelers)
from reward_models.labelers.base import CANT_TELL, FIRST, LABELERS, SECOND, Labeler, LabelerError, Labels, Pairs, build_labeler

__all__ = ["CANT_TELL", "FIRST", "LABELERS", "SECOND", "Labeler", "LabelerError", "Labels", "Pairs", "build_labeler"]
