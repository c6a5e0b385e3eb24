"""Stand-ins for backends whose real releases cannot be fetched here (Ollama, llama-swap).

Each module is stdlib-only and runnable as a script, so it can be shipped to a bare Debian
host as a "release" (see release.py). See docs/standins.md.
"""
