"""ROS 2 test fixtures: one rclpy context per test session (in-process nodes), processes for the rest.

tests/conftest.py gives the session its own ROS_DOMAIN_ID, which node processes inherit.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ros():
    """rclpy initialised for in-process nodes; shut down after the session."""
    rclpy = pytest.importorskip("rclpy")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


@pytest.fixture
def executor(ros):
    """A SingleThreadedExecutor whose nodes are destroyed after the test."""
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    yield ex
    for node in ex.get_nodes():
        ex.remove_node(node)
        if hasattr(node, "close"):
            node.close()
        node.destroy_node()
    ex.shutdown()
