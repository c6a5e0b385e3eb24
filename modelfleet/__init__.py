"""modelfleet: one import name for the project's folders.

``modelfleet.deploy``, ``modelfleet.roles``, ``modelfleet.router`` and the ``templates`` package
data are the top-level ``deploy/``, ``roles/``, ``router/`` and ``templates/`` folders of the
checkout (linked here), so an installed modelfleet adds only this one name to site-packages.
"""
