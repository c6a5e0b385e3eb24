"""roles/router.without_leaving_models: the live router config minus the models that leave."""

from __future__ import annotations

import yaml

from modelfleet.roles.router import leaving, without_leaving_models


def config(backends: dict[str, list[str]]) -> str:
    return yaml.safe_dump(
        {
            "listen": "0.0.0.0:11434",
            "backends": [
                {"name": name, "url": f"http://{name}:11434", "models": [{"name": m} for m in ms]}
                for name, ms in backends.items()
            ],
        },
        sort_keys=False,
    )


def models(text: str) -> dict[str, list[str]]:
    return {b["name"]: [m["name"] for m in b["models"]] for b in yaml.safe_load(text)["backends"]}


def test_a_leaving_model_is_withdrawn_and_a_joining_one_waits() -> None:
    live = config({"nv": ["gemma", "qwen"], "amd": ["gemma"]})
    new = config({"nv": ["qwen", "llama"], "amd": ["gemma"]})
    stage = without_leaving_models(live, new)
    assert stage is not None
    # gemma leaves nv now; llama joins only with the new config, once it is on the backend.
    assert models(stage) == {"nv": ["qwen"], "amd": ["gemma"]}
    assert yaml.safe_load(stage)["listen"] == "0.0.0.0:11434"


def test_nothing_leaving_is_no_change() -> None:
    live = config({"nv": ["gemma"], "amd": ["gemma"]})
    assert without_leaving_models(live, live) is None
    assert without_leaving_models(live, config({"nv": ["gemma", "qwen"], "amd": ["gemma"]})) is None


def test_a_backend_that_leaves_is_drained_before_its_unit_is_retired() -> None:
    live = config({"nv": ["gemma"], "old": ["gemma"]})
    stage = without_leaving_models(live, config({"nv": ["gemma"]}))
    assert stage is not None
    drained = {b["name"]: b.get("drained", False) for b in yaml.safe_load(stage)["backends"]}
    assert drained == {"nv": False, "old": True}
    assert without_leaving_models(stage, config({"nv": ["gemma"]})) is None


def test_leaving_names_the_models_per_backend_and_whole_backends() -> None:
    live = config({"nv": ["gemma", "qwen"], "amd": ["gemma"], "old": ["gemma"]})
    new = config({"nv": ["qwen", "llama"], "amd": ["gemma"]})
    # What the deploy waits on before pruning or retiring: gemma's requests on nv, all of old's.
    assert leaving(live, new) == {"nv": ["gemma"], "old": []}
    assert leaving(live, live) == {}
