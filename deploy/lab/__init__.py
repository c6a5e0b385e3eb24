"""The local lab: podman container hosts with emulated GPUs (``localfleet.py``), the stand-in
releases they download (``standins/``, named as stand-ins: the real ones cannot be fetched
here), the stack around them (``localstack.py``), and ``modelfleet demo`` with its preflight."""
