"""GPU detection role: pyinfra facts only (``roles/gpu/facts.py``); it changes nothing on a host.

The parsing lives in ``deploy/hardware/parsers.py`` (pure, fixture-tested); the facts only run
the tools.
See README.md.
"""
