"""The backend and router roles' facts and operations as data (pyinfra's own fixture format).

One folder per fact or operation under ``backend/facts/`` and ``backend/operations/``
(``<module under roles>.<name>``); a new behaviour is a new JSON file. Facts are keyed as the
fake host knows them, e.g. ``ollama.facts.OllamaModels``.
"""

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests
from pyinfra_testing.operations import make_operation_tests

HERE = Path(__file__).parent / "backend"

for folder in sorted((HERE / "facts").iterdir()):
    locals()[f"TestBackendFact_{folder.name}"] = make_fact_tests(
        "modelfleet.roles", folder.name, folder
    )
for folder in sorted((HERE / "operations").iterdir()):
    locals()[f"TestBackendOp_{folder.name}"] = make_operation_tests(
        "modelfleet.roles", folder.name, folder
    )
