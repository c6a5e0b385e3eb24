"""modelfleet's residency-aware router: one aiohttp process in front of the fleet.

Start with ``router/app.py`` (``create_app``); the routing rules live in ``router/policy.py``
(pure); docs/router.md has the config reference and the APIs.
"""
