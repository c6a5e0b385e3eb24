"""Hardware: what each backend host has (``parsers.py``: pure GPU-tool parsers; ``detect.py``:
the detection phase over pyinfra facts)."""
