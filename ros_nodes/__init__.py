"""ROS 2 nodes of the ``robot_learning`` package: thin rclpy adapters over the library.

One module per executable (``ros2 run robot_learning <name>``, ``pkg: robot_learning, exec: <name>`` in
launch files, ``python -m ros_nodes.<name>``): ``sim_robot`` (a simulated task behind the robot
interface), ``teleop`` (keyboard, gamepad or scripted expert; episode control), ``recorder`` (streams
-> episode store), ``policy`` (an ONNX policy behind the safety layer) and ``episode_driver`` (runs
evaluation episodes against the policy node and reports). ``common`` holds what they share: parameters, QoS, message classes, the entry point.
"""
