"""pyinfra entry point: ``pyinfra -y inventory/<fleet>.py deploy.py``.

Thin on purpose: the plan and its validation live in ``deploy/apply/context.py``,
the phases in ``deploy/apply/run.py``.
``--limit <group or host>`` narrows where operations run; the plan (and router.yaml) always
covers the whole inventory.
"""

from modelfleet.deploy.apply.run import deploy_host

deploy_host()
