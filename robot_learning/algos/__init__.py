"""Learners: one module per algorithm; importing this package registers them all (see base.py)."""
from robot_learning.algos import iql  # noqa: E402,F401
from robot_learning.algos import cql  # noqa: E402,F401
from robot_learning.algos import awac  # noqa: E402,F401
from robot_learning.algos import sac_n  # noqa: E402,F401
from robot_learning.algos import td3_bc  # noqa: E402,F401
from robot_learning.algos import ppo  # noqa: E402,F401
from robot_learning.algos import famo2o  # noqa: E402,F401
from robot_learning.algos import riql  # noqa: E402,F401
from robot_learning.algos import unio4  # noqa: E402,F401
from robot_learning.algos import ro2o  # noqa: E402,F401
from robot_learning.algos import h2o  # noqa: E402,F401
from robot_learning.algos import robofume  # noqa: E402,F401
