"""The package: one import name with its templates, no run-time import of tests/, and a
deploy/ whose imports go one way (no cycles; roles see only the plan's types)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("deploy", "roles", "router")


def test_the_wheel_holds_only_modelfleet_with_its_templates_and_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for part in ("modelfleet", *SHIPPED, "templates"):
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(REPO / part, src / part, symlinks=True, ignore=ignore)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / part, src / part)
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            *offline,
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("modelfleet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names} == {
        "modelfleet",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    templates = {f"modelfleet/{p.relative_to(REPO)}" for p in (REPO / "templates").rglob("*.j2")}
    assert templates and templates <= names
    for shipped in (
        "modelfleet/roles/ollama/files/ollama-pull.py",
        "modelfleet/roles/router/files/router-rollout.py",
        "modelfleet/router/static/dashboard.html",
        "modelfleet/deploy/lab/standins/release.py",
        "modelfleet/deploy/lab/fakegpu/profiles.json",
    ):
        assert shipped in names, shipped


def _imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports, at any level, ``modelfleet.`` dropped."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name.removeprefix("modelfleet.") for name in found}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in SHIPPED:
        for path in (REPO / package).rglob("*.py"):
            if "molecule" in path.parts:  # Molecule's verify tests run testinfra, not the code
                continue
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def test_nothing_shipped_imports_tests() -> None:
    for name, path in _modules().items():
        assert not any(m == "tests" or m.startswith("tests.") for m in _imports(path)), name


def test_no_import_cycles_and_roles_see_only_the_plan() -> None:
    modules = _modules()
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    for name, deps in graph.items():
        if name.startswith("roles"):
            outside = {d for d in deps if d.startswith("deploy")}
            assert outside <= {"deploy.plan", "deploy.hardware.parsers"}, (name, outside)
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done:
            return
        for dep in graph[name]:
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
