"""``robot-learning launch``: run a ROS 2 YAML launch file as processes, without the ROS launch system.

    robot-learning launch collect.launch.yaml task:=arm_reach episodes:=5
    robot-learning launch robot_learning collect.launch.yaml --show-args

``launch``/``launch_ros`` are not on PyPI, so this runs the same files ``ros2 launch robot_learning
<file>`` runs on a full ROS install, for the subset of the format the project uses:

- ``arg`` (``name``, ``default``, ``description``, ``choice: [{value: ...}]`` or the newer ``choices``):
  set with ``name:=value``; an argument without a default must be given, an argument the file does not
  declare is an error.
- ``let`` (``name``, ``value``), and substitutions ``$(var x)``, ``$(env X [default])``,
  ``$(optenv X [default])``, ``$(find-pkg-share pkg)``, ``$(dirname)``.
- ``node`` (``pkg``, ``exec``, ``name``, ``namespace``, ``param`` (``from: <file>`` or ``name``/``value``),
  ``remap`` (``from``/``to``), ``args``, ``ros_args``, ``output`` (screen|log|both), ``env``,
  ``on_exit: shutdown`` (a required node: when it exits, everything is shut down),
  ``sigterm_timeout``, ``sigkill_timeout``), and ``if``/``unless`` on every action.

Each node runs as its own process with ``--ros-args`` (name, namespace, parameter files, parameters,
remappings); ``robot_learning`` executables are the ``ros_nodes`` modules. Output lines are prefixed
with the node name. Shutdown (Ctrl-C, SIGTERM, or a required node exiting) sends SIGINT to every
node, then SIGTERM after ``sigterm_timeout`` s, then SIGKILL after ``sigkill_timeout`` s; a second
Ctrl-C escalates at once. As in ROS YAML launch files, attribute values are strings (quote numbers).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from robot_learning.config import CONFIG_DIR, ConfigError, build

#: The package root as ``$(find-pkg-share robot_learning)`` sees it: launch/ and configs/ live here
#: (an ament install puts the same folders under share/robot_learning).
PACKAGE = "robot_learning"
PACKAGE_SHARE = Path(__file__).resolve().parents[1]
LAUNCH_DIR = PACKAGE_SHARE / "launch"
#: Python package holding the executables of ``pkg: robot_learning`` (one module per node).
NODE_MODULES = "ros_nodes"
#: An empty parameter value on the command line (rcl rejects ``-p key:=``; YAML ``''`` is the empty string).
EMPTY_VALUE = "''"

ACTIONS = ("arg", "let", "node")
NODE_KEYS = {"pkg", "exec", "name", "namespace", "param", "remap", "args", "ros_args", "output", "env", "on_exit",
             "sigterm_timeout", "sigkill_timeout", "if", "unless"}


class LaunchError(ConfigError):
    """A launch file or launch argument is malformed (names the file, the entry, expected and found)."""


@dataclass
class LaunchSettings:
    """configs/launch.yaml: how nodes are stopped and where ``output: log`` goes."""

    # s between SIGINT and SIGTERM, and between SIGTERM and SIGKILL (ROS 2 launch's defaults: 5 s).
    sigterm_timeout: float = 5.0
    sigkill_timeout: float = 5.0
    # Directory for ``output: log`` files; null: $ROS_LOG_DIR or ~/.ros/log.
    log_dir: str | None = None


@dataclass
class Node:
    """One node process as a launch file describes it, substitutions done."""

    package: str
    executable: str
    name: str | None = None
    namespace: str | None = None
    param_files: list[str] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    ros_args: list[str] = field(default_factory=list)
    output: str = "screen"
    env: dict[str, str] = field(default_factory=dict)
    required: bool = False
    sigterm_timeout: float | None = None
    sigkill_timeout: float | None = None

    @property
    def label(self) -> str:
        return self.name or self.executable

    def command(self) -> list[str]:
        """The process command line: the executable, its args, then ``--ros-args ...``."""
        ros = []
        if self.name:
            ros += ["-r", f"__node:={self.name}"]
        if self.namespace:
            ros += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for path in self.param_files:
            ros += ["--params-file", path]
        for key, value in self.params:
            ros += ["-p", f"{key}:={value or EMPTY_VALUE}"]
        for src, dst in self.remaps:
            ros += ["-r", f"{src}:={dst}"]
        return [*resolve_executable(self.package, self.executable), *self.args, "--ros-args", *ros, *self.ros_args]


@dataclass
class Launch:
    """A parsed launch file: its declared arguments (name -> description) and nodes."""

    path: Path
    arguments: dict[str, dict[str, Any]]
    nodes: list[Node]


# ================================================================================== resolution
def package_share(package: str) -> Path:
    """``$(find-pkg-share package)``: this repository for robot_learning, else an ament prefix's share/."""
    if package == PACKAGE:
        return PACKAGE_SHARE
    for prefix in _prefixes():
        if (prefix / "share" / package).is_dir():
            return prefix / "share" / package
    raise LaunchError(f"$(find-pkg-share {package}): expected package '{package}' under share/ of "
                      f"{[str(p) for p in _prefixes()]}, found none")


def _prefixes() -> list[Path]:
    paths = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return paths + [Path(sys.prefix)]


def resolve_executable(package: str, executable: str) -> list[str]:
    """The command running ``executable`` of ``package``: a ros_nodes module, or lib/<pkg>/<exec> of a prefix."""
    if package == PACKAGE:
        module = f"{NODE_MODULES}.{executable}"
        if importlib.util.find_spec(module) is None:
            raise LaunchError(f"node exec '{executable}' of package {PACKAGE}: expected a module {module}, found none")
        return [sys.executable, "-m", module]
    for prefix in _prefixes():
        candidate = prefix / "lib" / package / executable
        if os.access(candidate, os.X_OK):
            return [str(candidate)]
    raise LaunchError(f"node exec '{executable}' of package '{package}': expected an executable lib/{package}/"
                      f"{executable} under {[str(p) for p in _prefixes()]}, found none")


def find_launch_file(name: str) -> Path:
    """A launch file given as a path or as a file name in this package's launch/ directory."""
    path = Path(name)
    if path.is_file():
        return path
    if (LAUNCH_DIR / name).is_file():
        return LAUNCH_DIR / name
    known = sorted(p.name for p in LAUNCH_DIR.glob("*.launch.yaml"))
    raise LaunchError(f"launch file '{name}': expected a path or one of {known}, found no such file")


# ================================================================================== substitutions
_SUBST = re.compile(r"\$\(([^()$]*)\)")


def substitute(text: Any, variables: Mapping[str, str], path: Path, where: str) -> str:
    """Expand ``$(...)`` substitutions in ``text`` (innermost first)."""
    if not isinstance(text, str):
        raise LaunchError(f"{where}: expected a string (quote numbers and booleans), found {text!r}")

    def expand(m: re.Match) -> str:
        parts = m.group(1).split()
        kind, rest = (parts[0], parts[1:]) if parts else ("", [])
        if kind == "var" and len(rest) == 1:
            if rest[0] not in variables:
                raise LaunchError(f"{where}: $(var {rest[0]}): expected a declared arg or let, found none "
                                  f"(known: {sorted(variables)})")
            return variables[rest[0]]
        if kind in ("env", "optenv") and 1 <= len(rest) <= 2:
            value = os.environ.get(rest[0], rest[1] if len(rest) == 2 else None)
            if value is None and kind == "env":
                raise LaunchError(f"{where}: $(env {rest[0]}): expected the environment variable to be set, "
                                  "found it unset")
            return value or ""
        if kind == "find-pkg-share" and len(rest) == 1:
            return str(package_share(rest[0]))
        if kind == "dirname" and not rest:
            return str(path.resolve().parent)
        raise LaunchError(f"{where}: $({m.group(1)}): expected one of $(var x), $(env X [default]), "
                          "$(optenv X [default]), $(find-pkg-share pkg), $(dirname)")

    while (new := _SUBST.sub(expand, text)) != text:
        text = new
    return text


def _truth(value: str, where: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise LaunchError(f"{where}: expected true/false/1/0, found {value!r}")


# ================================================================================== parsing
def parse_arguments(tokens: Sequence[str]) -> dict[str, str]:
    """``name:=value`` tokens as a mapping."""
    out = {}
    for tok in tokens:
        name, sep, value = tok.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch argument '{tok}': expected name:=value, found no ':='")
        out[name] = value
    return out


def load_launch(path: str | Path, arguments: Mapping[str, str]) -> Launch:
    """Parse ``path`` with ``arguments`` (name -> value): arguments, lets and nodes, in file order."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise LaunchError(f"{path}: expected a YAML launch file, found invalid YAML ({e})") from None
    if not isinstance(data, dict) or set(data) != {"launch"} or not isinstance(data["launch"], list):
        raise LaunchError(f"{path}: expected a mapping with one key 'launch' holding a list of actions, found "
                          f"{list(data) if isinstance(data, dict) else type(data).__name__}")
    variables: dict[str, str] = {}
    declared: dict[str, dict[str, Any]] = {}
    nodes = []
    for i, entry in enumerate(data["launch"]):
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in ACTIONS:
            raise LaunchError(f"{path}: launch[{i}]: expected one of {list(ACTIONS)}, found "
                              f"{list(entry) if isinstance(entry, dict) else entry!r}")
        kind, body = next(iter(entry.items()))
        where = f"{path}: launch[{i}] ({kind})"
        if not isinstance(body, dict):
            raise LaunchError(f"{where}: expected a mapping of attributes, found {body!r}")
        sub = _substituter(variables, path, where)
        if not _condition(body, sub, where):
            continue
        if kind == "arg":
            _declare(body, arguments, variables, declared, sub, where)
        elif kind == "let":
            _require(body, {"name", "value", "if", "unless"}, {"name", "value"}, where)
            variables[body["name"]] = sub(body["value"], "value")
        else:
            nodes.append(_node(body, sub, where))
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        raise LaunchError(f"{path}: launch argument '{unknown[0]}': expected one of the declared arguments "
                          f"{sorted(declared)}, found '{unknown[0]}:={arguments[unknown[0]]}'")
    return Launch(path, declared, nodes)


def _substituter(variables: Mapping[str, str], path: Path, where: str) -> Callable[[Any, str], str]:
    """``sub(value, attribute)``: :func:`substitute` with errors naming the entry and attribute."""
    return lambda value, attribute: substitute(value, variables, path, f"{where}.{attribute}")


def _require(body: Mapping, allowed: set[str], required: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise LaunchError(f"{where}: attribute '{unknown[0]}': expected one of {sorted(allowed)}")
    missing = sorted(required - set(body))
    if missing:
        raise LaunchError(f"{where}: attribute '{missing[0]}': expected it, found it missing")


def _condition(body: Mapping, sub: Any, where: str) -> bool:
    ok = True
    if "if" in body:
        ok = _truth(sub(body["if"], "if"), f"{where}.if")
    if "unless" in body:
        ok = ok and not _truth(sub(body["unless"], "unless"), f"{where}.unless")
    return ok


def _declare(body: Mapping, arguments: Mapping[str, str], variables: dict[str, str], declared: dict, sub: Any,
             where: str) -> None:
    _require(body, {"name", "default", "description", "choice", "choices", "if", "unless"}, {"name"}, where)
    name = body["name"]
    choices = body.get("choices")
    if "choice" in body:  # the form every ROS 2 release parses: choice: [{value: a}, {value: b}]
        entries = body["choice"]
        if "choices" in body or not isinstance(entries, list) or \
                not all(isinstance(c, dict) and set(c) == {"value"} for c in entries):
            raise LaunchError(f"{where}.choice: expected a list of {{value: <string>}} (and no 'choices'), "
                              f"found {entries!r}")
        choices = [c["value"] for c in entries]
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise LaunchError(f"{where}.choices: expected a list of strings, found {choices!r}")
    if name in arguments:
        value = arguments[name]
    elif "default" in body:
        value = sub(body["default"], "default")
    else:
        raise LaunchError(f"{where}: argument '{name}' ({body.get('description', 'no description')}): expected "
                          f"a value ({name}:=...), found none and no default")
    if choices is not None and value not in choices:
        raise LaunchError(f"{where}: argument '{name}': expected one of {choices}, found {value!r}")
    variables[name] = value
    declared[name] = {"default": body.get("default"), "description": body.get("description", ""), "choices": choices}


def _node(body: Mapping, sub: Any, where: str) -> Node:
    _require(body, NODE_KEYS, {"pkg", "exec"}, where)
    node = Node(package=sub(body["pkg"], "pkg"), executable=sub(body["exec"], "exec"))
    if "name" in body:
        node.name = sub(body["name"], "name")
    if "namespace" in body:
        node.namespace = sub(body["namespace"], "namespace")
    for j, p in enumerate(body.get("param") or []):
        w = f"param[{j}]"
        if not isinstance(p, dict) or not ({"from"} == set(p) or {"name", "value"} == set(p)):
            raise LaunchError(f"{where}.{w}: expected {{from: <file>}} or {{name: ..., value: ...}}, found {p!r}")
        if "from" in p:
            node.param_files.append(sub(p["from"], f"{w}.from"))
        else:
            value = p["value"]
            text = sub(value, f"{w}.value") if isinstance(value, str) else \
                yaml.safe_dump(value, default_flow_style=True).strip()
            node.params.append((sub(p["name"], f"{w}.name"), text))
    for j, r in enumerate(body.get("remap") or []):
        if not isinstance(r, dict) or set(r) != {"from", "to"}:
            raise LaunchError(f"{where}.remap[{j}]: expected {{from: ..., to: ...}}, found {r!r}")
        node.remaps.append((sub(r["from"], f"remap[{j}].from"), sub(r["to"], f"remap[{j}].to")))
    node.args = shlex.split(sub(body["args"], "args")) if "args" in body else []
    node.ros_args = shlex.split(sub(body["ros_args"], "ros_args")) if "ros_args" in body else []
    node.output = sub(body.get("output", "screen"), "output")
    if node.output not in ("screen", "log", "both"):
        raise LaunchError(f"{where}.output: expected screen, log or both, found {node.output!r}")
    for j, e in enumerate(body.get("env") or []):
        if not isinstance(e, dict) or set(e) != {"name", "value"}:
            raise LaunchError(f"{where}.env[{j}]: expected {{name: ..., value: ...}}, found {e!r}")
        node.env[sub(e["name"], f"env[{j}].name")] = sub(e["value"], f"env[{j}].value")
    if "on_exit" in body:
        if sub(body["on_exit"], "on_exit") != "shutdown":
            raise LaunchError(f"{where}.on_exit: expected 'shutdown', found {body['on_exit']!r}")
        node.required = True
    for key in ("sigterm_timeout", "sigkill_timeout"):
        if key in body:
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise LaunchError(f"{where}.{key}: expected a number of seconds, found {value!r}")
            try:
                setattr(node, key, float(sub(value, key) if isinstance(value, str) else value))
            except ValueError:
                raise LaunchError(f"{where}.{key}: expected a number of seconds, found {value!r}") from None
    try:
        node.command()  # resolves the executable now: a missing one is an error before anything starts
    except LaunchError as e:
        raise LaunchError(f"{where}: {e}") from None
    return node


# ================================================================================== processes
class ProcessGroup:
    """Runs the nodes of a launch as processes and shuts them down in order (SIGINT, SIGTERM, SIGKILL)."""

    def __init__(self, nodes: Sequence[Node], settings: LaunchSettings, out: IO[str] | None = None):
        self.nodes = list(nodes)
        self.settings = settings
        self.out = out or sys.stdout
        self._print_lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        self._signals = 0
        self._log_dir = Path(settings.log_dir or os.environ.get("ROS_LOG_DIR") or Path.home() / ".ros" / "log") / \
            f"robot_learning_launch_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"

    def say(self, label: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"[{label}] {line}\n")
            self.out.flush()

    def _pump(self, node: Node, proc: subprocess.Popen) -> None:
        """Forward a node's output lines: prefixed to the screen and/or to its log file."""
        with ExitStack() as stack:
            log = None
            if node.output in ("log", "both"):
                self._log_dir.mkdir(parents=True, exist_ok=True)
                log = stack.enter_context(open(self._log_dir / f"{node.label}.log", "w"))
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                if node.output in ("screen", "both"):
                    self.say(node.label, line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()

    def start(self) -> None:
        for node in self.nodes:
            env = {**os.environ, "PYTHONUNBUFFERED": "1", **node.env}
            cmd = node.command()
            # Own session: signals reach a node only from this launcher, in the shutdown order.
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    start_new_session=True)
            self._procs.append(proc)
            thread = threading.Thread(target=self._pump, args=(node, proc), daemon=True)
            thread.start()
            self._threads.append(thread)
            self.say("launch", f"started {node.label} (pid {proc.pid}): {shlex.join(cmd)}")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1

    def run(self) -> int:
        """Start the nodes and wait; returns the launch's exit code (see :func:`main`)."""
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            return self._supervise()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            for t in self._threads:
                t.join(timeout=1.0)

    def _supervise(self) -> int:
        stage, stage_at, cause, reported = 0, 0.0, None, set()
        while True:
            codes = [p.poll() for p in self._procs]
            for i, code in enumerate(codes):
                if code is not None and i not in reported:
                    reported.add(i)
                    self.say("launch", f"{self.nodes[i].label} exited with code {code}")
                    if stage == 0 and self.nodes[i].required:
                        cause = ("required", i)
            if all(c is not None for c in codes):
                return self._exit_code(cause, codes)
            if stage == 0 and (cause is not None or self._signals):
                cause = cause or ("signal", None)
                stage, stage_at = 1, time.monotonic()
                self.say("launch", "shutting down: " + (f"required node {self.nodes[cause[1]].label} exited"
                                                        if cause[0] == "required" else "interrupted"))
                self._send(signal.SIGINT)
            elif stage in (1, 2):
                timeout = self._timeout("sigterm_timeout" if stage == 1 else "sigkill_timeout")
                if time.monotonic() - stage_at >= timeout or self._signals > stage:
                    stage, stage_at = stage + 1, time.monotonic()
                    self._send(signal.SIGTERM if stage == 2 else signal.SIGKILL)
            time.sleep(0.05)

    def _timeout(self, key: str) -> float:
        alive = [n for n, p in zip(self.nodes, self._procs, strict=True) if p.poll() is None]
        values = [getattr(n, key) for n in alive if getattr(n, key) is not None]
        return max(values) if values else getattr(self.settings, key)

    def _send(self, sig: int) -> None:
        for node, proc in zip(self.nodes, self._procs, strict=True):
            if proc.poll() is None:
                if sig != signal.SIGINT:
                    self.say("launch", f"sending {signal.Signals(sig).name} to {node.label}")
                proc.send_signal(sig)

    def _exit_code(self, cause: tuple[str, int | None] | None, codes: list[int]) -> int:
        if cause is not None and cause[0] == "required":
            return codes[cause[1]]
        if cause is not None:
            return 130
        return 0 if all(c == 0 for c in codes) else 1


def load_settings() -> LaunchSettings:
    """configs/launch.yaml as :class:`LaunchSettings`."""
    path = CONFIG_DIR / "launch.yaml"
    return build(LaunchSettings, yaml.safe_load(path.read_text()) or {}, where=str(path))


def launch(path: str | Path, arguments: Mapping[str, str], out: IO[str] | None = None) -> int:
    """Run the launch file at ``path`` with ``arguments``; returns the exit code (see :func:`main`)."""
    spec = load_launch(find_launch_file(str(path)), arguments)
    if not spec.nodes:
        raise LaunchError(f"{spec.path}: expected at least one node to run, found none")
    return ProcessGroup(spec.nodes, load_settings(), out).run()


def describe_arguments(path: Path) -> str:
    """The arguments a launch file declares (read without evaluating the file)."""
    data = yaml.safe_load(path.read_text()) or {}
    lines = [f"arguments of {path}:"]
    for entry in data.get("launch") or []:
        a = entry.get("arg") if isinstance(entry, dict) else None
        if isinstance(a, dict) and "name" in a:
            default = f"default {a['default']!r}" if "default" in a else "required"
            options = a.get("choices") or [c.get("value") for c in a.get("choice") or [] if isinstance(c, dict)]
            choices = f", one of {options}" if options else ""
            lines.append(f"  {a['name']}:=<value>  {a.get('description', '')} ({default}{choices})")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """CLI entry (raw verb): ``[robot_learning] FILE [--show-args] [name:=value ...]``.

    Exit code: a required node's exit code when its exit shut the launch down, 130 after Ctrl-C or
    SIGTERM, otherwise 0 when every node exited with 0 and 1 when one did not.
    """
    tokens = list(argv)
    if tokens and tokens[0] == PACKAGE and len(tokens) > 1 and ":=" not in tokens[1]:
        tokens = tokens[1:]
    if not tokens or ":=" in tokens[0]:
        raise LaunchError("launch: expected a launch file (a path or a file in launch/), then name:=value arguments")
    path, rest = find_launch_file(tokens[0]), tokens[1:]
    if "--show-args" in rest or "-s" in rest:
        print(describe_arguments(path))
        return 0
    return launch(path, parse_arguments(rest))
