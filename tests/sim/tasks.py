"""The simulated tasks by family, shared by the sim tests."""

ARM_TASKS = ("arm_reach", "arm_push")
MAZE_TASKS = ("point_maze_umaze", "point_maze_medium", "point_maze_large")
LOCOMOTION_TASKS = ("halfcheetah", "hopper", "walker2d")
ALL_TASKS = ARM_TASKS + MAZE_TASKS + LOCOMOTION_TASKS
