"""Teleoperation inputs without ROS: key presses and gamepad state -> a command and episode events.

Commands are normalised to [-1, 1] per action dimension (the teleop node maps them onto the task's
action limits); episode events are ``start``, ``success``, ``failure`` and ``discard``.

- :class:`KeyboardCommand`: a key per direction and dimension nudges that dimension by ``step`` and the
  value stays (terminals report presses, not releases); the stop key zeroes every dimension.
- :class:`JoyCommand`: ``sensor_msgs/Joy`` axes scaled per dimension; the command is zero unless the
  deadman button is held and the last Joy message is recent; buttons fire events on press.
- :class:`TtyKeys`: key presses from a terminal in cbreak mode (SSH and headless terminals: no display).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from collections.abc import Mapping, Sequence
from typing import IO

import numpy as np

EVENTS = ("start", "success", "failure", "discard")


def _check_events(events: Mapping[str, object], where: str) -> None:
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise ValueError(f"{where}: event '{unknown[0]}': expected one of {list(EVENTS)}")


class KeyboardCommand:
    """Sticky per-dimension command driven by key presses."""

    def __init__(self, dim: int, plus: Sequence[str], minus: Sequence[str], *, step: float, stop: str,
                 events: Mapping[str, str]):
        if len(plus) < dim or len(minus) < dim:
            raise ValueError(f"keyboard keys: expected at least {dim} plus and {dim} minus keys (one per action "
                             f"dimension), found plus={list(plus)} minus={list(minus)}")
        _check_events(events, "keyboard keys")
        keys = list(plus[:dim]) + list(minus[:dim]) + [stop] + list(events.values())
        if len(set(keys)) != len(keys) or any(len(k) != 1 for k in keys):
            raise ValueError(f"keyboard keys: expected distinct single characters, found {keys}")
        self.value = np.zeros(dim, dtype=np.float64)
        self.step = step
        self.stop = stop
        self._plus, self._minus = list(plus[:dim]), list(minus[:dim])
        self._moves = {k: (i, 1.0) for i, k in enumerate(plus[:dim])}
        self._moves |= {k: (i, -1.0) for i, k in enumerate(minus[:dim])}
        self._events = {key: event for event, key in events.items()}

    def press(self, key: str) -> str | None:
        """Apply one key press; returns the episode event it triggers, if any."""
        if key in self._moves:
            i, sign = self._moves[key]
            self.value[i] = np.clip(self.value[i] + sign * self.step, -1.0, 1.0)
        elif key == self.stop:
            self.value[:] = 0.0
        return self._events.get(key)

    def help(self) -> str:
        dims = ", ".join(f"{p}/{m}" for p, m in zip(self._plus, self._minus, strict=True))
        events = ", ".join(f"'{k}' {e}" for k, e in self._events.items())
        return f"keys: {dims} (+/- per action dimension), '{self.stop}' stop; {events}"


class JoyCommand:
    """Gamepad axes -> command with a deadman button; buttons -> episode events on press."""

    def __init__(self, dim: int, axes: Sequence[int], scale: Sequence[float], *, deadman: int,
                 buttons: Mapping[str, int], timeout_ns: int):
        if len(axes) != dim or len(scale) != dim:
            raise ValueError(f"joy mapping: expected {dim} axes and {dim} scales (one per action dimension), "
                             f"found axes={list(axes)} scale={list(scale)}")
        _check_events(buttons, "joy buttons")
        self.axes, self.scale = list(axes), np.asarray(scale, dtype=np.float64)
        self.deadman, self.buttons, self.timeout_ns = deadman, dict(buttons), timeout_ns
        self._axes = np.zeros(0)
        self._pressed: list[int] = []
        self._received: int | None = None

    def update(self, axes: Sequence[float], buttons: Sequence[int], received: int) -> list[str]:
        """Take one Joy message; returns the events whose button was just pressed."""
        previous = self._pressed
        self._axes, self._pressed, self._received = np.asarray(axes, dtype=np.float64), list(buttons), received
        return [event for event, b in self.buttons.items()
                if 0 <= b < len(buttons) and buttons[b] and not (b < len(previous) and previous[b])]

    def held(self, button: int) -> bool:
        return button < 0 or (button < len(self._pressed) and bool(self._pressed[button]))

    def command(self, now: int) -> np.ndarray:
        """The normalised command: zero without a recent Joy message or with the deadman released."""
        if self._received is None or now - self._received > self.timeout_ns or not self.held(self.deadman):
            return np.zeros(len(self.axes))
        values = np.array([self._axes[a] if 0 <= a < len(self._axes) else 0.0 for a in self.axes])
        return np.clip(values * self.scale, -1.0, 1.0)


class TtyKeys:
    """Non-blocking key presses from a terminal; restores the terminal on :meth:`close`."""

    def __init__(self, stream: IO[str] | None = None):
        stream = stream or sys.stdin
        if not stream.isatty():
            raise OSError("keyboard teleop: expected a terminal on stdin, found none (run it in a terminal, "
                          "e.g. over SSH, or use teleop:=joy / teleop:=scripted)")
        self.fd = stream.fileno()
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)

    def read(self) -> list[str]:
        """Characters typed since the last call (escape sequences such as arrow keys are skipped)."""
        if not select.select([self.fd], [], [], 0)[0]:
            return []
        text = os.read(self.fd, 256).decode(errors="ignore")
        keys, i = [], 0
        while i < len(text):
            if text[i] == "\x1b":
                i += 3 if text[i + 1:i + 2] == "[" else 2
                continue
            keys.append(text[i])
            i += 1
        return keys

    def close(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
