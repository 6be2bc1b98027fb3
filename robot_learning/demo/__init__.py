"""The end-to-end demo: teleoperation over ROS 2 -> preference rewards -> offline -> online -> ONNX -> deployment.

``config.py`` holds what the demo runs (configs/demo.yaml, configs/scale/), ``stages.py`` the CLI commands
each stage types, ``runner.py`` runs them and survives Ctrl-C, ``report.py`` writes report.md, the PNGs
and summary.json from the stages' own artefacts.
"""
