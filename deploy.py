"""pyinfra entry point: ``pyinfra -y inventory/<fleet>.py deploy.py``.

Thin on purpose: the plan, its validation and the phases live in ``deploy/orchestrate.py``.
``--limit <group or host>`` narrows where operations run; the plan (and router.yaml) always
covers the whole inventory.
"""

from deploy.orchestrate import deploy_host

deploy_host()
