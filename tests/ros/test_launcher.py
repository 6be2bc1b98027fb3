"""The YAML launch-file runner: arguments, substitutions, node command lines, required nodes, shutdown."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from robot_learning.launcher import LaunchError, LaunchSettings, ProcessGroup, load_launch, main, parse_arguments
from tests.ros.helpers import ROOT

#: Test executables: print argv, then behave as named on SIGINT/SIGTERM.
SCRIPTS = {
    "quick": "import sys, time; print('argv', sys.argv[1:], flush=True); time.sleep(0.5)",
    "polite": textwrap.dedent("""\
        import signal, sys, time
        signal.signal(signal.SIGINT, lambda *a: (print('got SIGINT', flush=True), sys.exit(0)))
        print('ready', flush=True)
        while True: time.sleep(0.05)
        """),
    "stubborn": textwrap.dedent("""\
        import signal, time
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda n, f: print('ignoring', signal.Signals(n).name, flush=True))
        print('ready', flush=True)
        while True: time.sleep(0.05)
        """),
}


@pytest.fixture
def prefix(tmp_path, monkeypatch):
    """An ament-like prefix with lib/testpkg/<exec> scripts, on AMENT_PREFIX_PATH."""
    lib = tmp_path / "prefix" / "lib" / "testpkg"
    lib.mkdir(parents=True)
    for name, code in SCRIPTS.items():
        path = lib / name
        path.write_text(f"#!{sys.executable}\n{code}")
        path.chmod(0o755)
    (tmp_path / "prefix" / "share" / "testpkg").mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "prefix"))
    return tmp_path / "prefix"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.launch.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_arguments_lets_substitutions_and_node_command_lines(tmp_path, prefix, monkeypatch):
    monkeypatch.setenv("RL_TEST_ENV", "from-env")
    path = write(tmp_path, """\
        launch:
        - arg: {name: rate, default: "20"}
        - arg: {name: ns, default: robot1}
        - let: {name: params, value: "$(dirname)/params.yaml"}
        - node:
            pkg: testpkg
            exec: quick
            name: worker
            namespace: "$(var ns)"
            args: "--flag value"
            ros_args: "--log-level debug"
            param:
            - {from: "$(var params)"}
            - {name: rate_hz, value: "$(var rate)"}
            - {name: names, value: [a, b]}
            - {name: who, value: "$(env RL_TEST_ENV) $(optenv RL_UNSET fallback)"}
            remap:
            - {from: cmd, to: "/$(var ns)/cmd"}
            env:
            - {name: EXTRA, value: "1"}
        - node: {pkg: testpkg, exec: quick, name: skipped, if: "false"}
        - node: {pkg: robot_learning, exec: recorder, unless: "true"}
        """)
    launch = load_launch(path, parse_arguments(["rate:=50"]))
    assert [n.name for n in launch.nodes] == ["worker"]
    node = launch.nodes[0]
    assert node.command() == [
        str(prefix / "lib" / "testpkg" / "quick"), "--flag", "value", "--ros-args", "-r", "__node:=worker",
        "-r", "__ns:=/robot1", "--params-file", str(tmp_path.resolve() / "params.yaml"), "-p", "rate_hz:=50",
        "-p", "names:=[a, b]", "-p", "who:=from-env fallback", "-r", "cmd:=/robot1/cmd", "--log-level", "debug"]
    assert node.env == {"EXTRA": "1"} and not node.required
    assert load_launch(path, {}).nodes[0].params[0] == ("rate_hz", "20")


def test_collect_launch_file_resolves_package_executables_and_files():
    launch = load_launch(ROOT / "launch" / "collect.launch.yaml", {"episodes": "2", "out": "x.zarr"})
    names = {n.name: n for n in launch.nodes}
    assert set(names) == {"sim_robot", "recorder", "teleop"} and names["teleop"].required
    assert names["recorder"].command()[:3] == [sys.executable, "-m", "ros_nodes.recorder"]
    assert names["recorder"].param_files == [str(ROOT / "configs" / "ros" / "recorder.yaml")]
    assert ("episodes", "2") in names["teleop"].params and ("out", "x.zarr") in names["recorder"].params
    assert "tier:=''" in names["teleop"].command()     # an empty value reaches rcl as YAML '' (it rejects "tier:=")


@pytest.mark.parametrize("text, arguments, message", [
    ("- arg: {name: task}\n", {}, "argument 'task' (no description): expected a value (task:=...)"),
    ("- arg: {name: task, default: a}\n", {"tsak": "b"},
     "launch argument 'tsak': expected one of the declared arguments ['task'], found 'tsak:=b'"),
    ("- arg: {name: mode, default: a, choices: [a, b]}\n", {"mode": "c"}, "expected one of ['a', 'b'], found 'c'"),
    ("- arg: {name: mode, default: a, choice: [{value: a}, {value: b}]}\n", {"mode": "c"},
     "expected one of ['a', 'b'], found 'c'"),
    ("- arg: {name: mode, default: a, choice: [a, b]}\n", {}, "choice: expected a list of {value: <string>}"),
    ("- arg: {name: episodes, default: 10}\n", {}, "expected a string (quote numbers and booleans), found 10"),
    ("- group: {}\n", {}, "launch[0]: expected one of ['arg', 'let', 'node']"),
    ("- node: {pkg: testpkg, exec: quick, color: red}\n", {}, "attribute 'color': expected one of"),
    ("- node: {pkg: testpkg, exec: missing}\n", {}, "expected an executable lib/testpkg/missing"),
    ("- node: {pkg: robot_learning, exec: nothing}\n", {}, "expected a module ros_nodes.nothing"),
    ("- node: {pkg: testpkg, exec: quick, name: $(var undefined)}\n", {}, "$(var undefined): expected a declared"),
    ("- node: {pkg: testpkg, exec: quick, on_exit: restart}\n", {}, "on_exit: expected 'shutdown'"),
])
def test_malformed_launch_files_and_arguments_are_errors(tmp_path, prefix, text, arguments, message):
    path = write(tmp_path, "launch:\n" + text)
    with pytest.raises(LaunchError) as e:
        load_launch(path, arguments)
    assert message in str(e.value) and str(path) in str(e.value)


def test_cli_arguments_must_be_name_value_pairs():
    with pytest.raises(LaunchError, match="expected name:=value"):
        main(["collect.launch.yaml", "task=arm_reach"])
    with pytest.raises(LaunchError, match="expected a path or one of"):
        main(["nonexistent.launch.yaml"])


def test_a_required_node_exiting_shuts_everything_down_in_order(tmp_path, prefix):
    path = write(tmp_path, """\
        launch:
        - node: {pkg: testpkg, exec: quick, name: quick, on_exit: shutdown, param: [{name: x, value: "1"}]}
        - node: {pkg: testpkg, exec: polite, name: polite}
        - node: {pkg: testpkg, exec: stubborn, name: stubborn, sigterm_timeout: "0.5", sigkill_timeout: 0.5}
        """)
    out = io.StringIO()
    start = time.monotonic()
    code = ProcessGroup(load_launch(path, {}).nodes, LaunchSettings(sigterm_timeout=5, sigkill_timeout=5), out).run()
    text = out.getvalue()
    assert code == 0, text
    assert "[quick] argv ['--ros-args', '-r', '__node:=quick', '-p', 'x:=1']" in text
    assert "shutting down: required node quick exited" in text
    assert "[polite] got SIGINT" in text and "polite exited with code 0" in text
    assert "[stubborn] ignoring SIGINT" in text and "sending SIGTERM to stubborn" in text
    assert "[stubborn] ignoring SIGTERM" in text and "sending SIGKILL to stubborn" in text
    assert f"stubborn exited with code {-signal.SIGKILL}" in text
    assert time.monotonic() - start < 4                        # the node's own timeouts, not the 5 s defaults


def test_ctrl_c_stops_every_node(tmp_path, prefix):
    path = write(tmp_path, """\
        launch:
        - node: {pkg: testpkg, exec: polite, name: first}
        - node: {pkg: testpkg, exec: polite, name: second}
        """)
    proc = subprocess.Popen([sys.executable, "-m", "robot_learning.cli", "launch", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        lines = []
        while sum("ready" in line for line in lines) < 2:
            lines.append(proc.stdout.readline())
            assert lines[-1], "".join(lines)
        proc.send_signal(signal.SIGINT)
        text = "".join(lines) + proc.communicate(timeout=30)[0]
    finally:
        proc.kill()                                   # no-op once it exited
    assert proc.returncode == 130, text
    assert "[first] got SIGINT" in text and "[second] got SIGINT" in text and "shutting down: interrupted" in text
