"""Apply: the plan and the rendered files put on the hosts, phase by phase (``run.py``)."""
