"""What every node shares: parameters, QoS profiles, message classes, service calls, the entry point.

QoS follows DESIGN.md section 7: sensor streams use sensor-data QoS (best effort, keep last, volatile),
commands and episode control are reliable, status is reliable and TRANSIENT_LOCAL (latched: a late
subscriber gets the last status). Nodes run on a SingleThreadedExecutor (measurements.md: the
multi-threaded one lost 75% of the messages here).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.client import Client
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from robot_learning.config import ConfigError
from robot_learning.data.store import StoreError
from robot_learning.spec import SpecError


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Commands and episode control: reliable, volatile, keeping the last ``depth`` messages."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


#: Commands and episode control: every message matters.
COMMAND_QOS = reliable_qos()
#: Latched status: the last message is kept for subscribers that join later.
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def sensor_qos(depth: int = 5) -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) keeping the last ``depth`` messages for a slow reader."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


class ParameterError(ConfigError):
    """A node parameter has the wrong type or value (names node, parameter, expected and found)."""


def _coerce(node: Node, name: str, value: Any, default: Any) -> Any:
    where = f"node '{node.get_fully_qualified_name()}': parameter '{name}'"
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ParameterError(f"{where}: expected true or false, found {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParameterError(f"{where}: expected an integer, found {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ParameterError(f"{where}: expected a number, found {value!r}")
    if isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ParameterError(f"{where}: expected a string, found {value!r}")
    if isinstance(default, list):
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ParameterError(f"{where}: expected a list, found {value!r}")
    return value


def declare_parameters(node: Node, defaults: Mapping[str, Any]) -> SimpleNamespace:
    """Declare ``defaults`` as parameters and return their values, coerced to the defaults' types.

    Parameters are dynamically typed so that ``noise:=0`` (an integer in YAML) still sets a float.
    """
    values = {}
    for name, default in defaults.items():
        param = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True))
        values[name] = _coerce(node, name, param.value, default)
    return SimpleNamespace(**values)


def message_class(type_name: str) -> type:
    """The rclpy class of ``package/msg/Type`` (or ``package/Type``)."""
    from robot_learning.data.convert.ros_msgs import msg_type

    package, _, name = msg_type(type_name).split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ModuleNotFoundError, AttributeError):
        raise SpecError(f"message type '{type_name}': expected an installed message package providing it, "
                        f"found none (pip install ros-{package.replace('_', '-')})") from None


def now_ns(node: Node) -> int:
    return node.get_clock().now().nanoseconds


def spin_until(executor: SingleThreadedExecutor, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
    """Spin until ``predicate()`` holds (evaluated once per turn); False on timeout or shutdown."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while rclpy.ok(context=executor.context):
        if predicate():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        executor.spin_once(timeout_sec=0.05)
    return False


def call(executor: SingleThreadedExecutor, client: Client, request: Any, timeout: float) -> Any:
    """Call a service and spin until its response arrives; raises TimeoutError naming the service."""
    if not client.wait_for_service(timeout_sec=timeout):
        raise TimeoutError(f"service '{client.srv_name}': expected it to be available within {timeout} s, found none")
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    if not future.done():
        client.remove_pending_request(future)
        raise TimeoutError(f"service '{client.srv_name}': expected a response within {timeout} s, found none")
    return future.result()


class RobotLearningNode(Node):
    """A node with a ``run`` (default: spin) and a ``close`` called on every way out."""

    def run(self, executor: SingleThreadedExecutor) -> int:
        executor.spin()
        return 0

    def close(self) -> None:
        """Release resources; called after spinning ends (Ctrl-C, SIGTERM, a returned ``run``)."""


def run_node(node_class: Callable[[], RobotLearningNode], argv: Sequence[str] | None = None) -> int:
    """Run one node in this process: ``--ros-args`` from ``argv``; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    rclpy.init(args=list(sys.argv if argv is None else argv))
    logger = rclpy.logging.get_logger(getattr(node_class, "default_name", "robot_learning"))
    code = 0
    node = None
    try:
        node = node_class()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        code = node.run(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (SpecError, StoreError, ConfigError, TimeoutError) as e:
        logger.error(str(e))
        code = 1
    except Exception:  # a signal can invalidate the context while the executor waits
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
