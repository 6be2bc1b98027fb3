"""Learners: one module per algorithm; importing this package registers them all (see base.py)."""
