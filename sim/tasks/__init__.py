"""The simulated tasks: a shared MuJoCo base (``base``), the arm (``arm``), the point maze (``maze``) and
gymnasium's locomotion envs (``locomotion``)."""
