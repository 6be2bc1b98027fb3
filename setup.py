"""Build shim for colcon's ament_python builds: the package metadata lives in pyproject.toml.

colcon runs ``setup.py``; this adds what a ROS 2 package installs besides its Python packages: the
ament index marker, package.xml, the launch files and the node parameter files.
"""

from glob import glob

from setuptools import setup

setup(data_files=[
    ("share/ament_index/resource_index/packages", ["resource/robot_learning"]),
    ("share/robot_learning", ["package.xml"]),
    ("share/robot_learning/launch", sorted(glob("launch/*.launch.yaml"))),
    ("share/robot_learning/configs/ros", sorted(glob("configs/ros/*.yaml"))),
])
