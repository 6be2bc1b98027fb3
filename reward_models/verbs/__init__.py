"""The reward CLI verbs: ``label``, ``reward train``, ``reward relabel``, ``reward eval`` (one module each)."""
