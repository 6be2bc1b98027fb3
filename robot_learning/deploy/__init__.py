"""Running policies on robots: the safety layer and deployment helpers (no ROS imports here)."""
