"""Helpers for unit tests: write small inventories (with group_data) into tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab.standins import llama_swap


@pytest.fixture
def write_inventory(tmp_path: Path):
    """write_inventory(inventory_src, {"all": src, ...}) -> path of the inventory file."""

    def write(source: str, group_data: dict[str, str] | None = None, name: str = "fleet") -> str:
        folder = tmp_path / "inventory"
        (folder / "group_data").mkdir(parents=True, exist_ok=True)
        for group, text in (group_data or {}).items():
            (folder / "group_data" / f"{group}.py").write_text(textwrap.dedent(text))
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return str(path)

    return write


@pytest.fixture
def swap() -> Iterator[Callable[..., llama_swap.RunningStandin]]:
    """Factory: ``swap(config, **knobs)`` starts a llama-swap stand-in; stopped after the test."""
    started: list[llama_swap.RunningStandin] = []

    def start(config: Any, **knobs: Any) -> llama_swap.RunningStandin:
        server = llama_swap.start_in_thread(config, **knobs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
