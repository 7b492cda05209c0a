"""No exact pin in the package metadata (issue 19); the README scripts keep exact versions in a file of their own."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_CONSTRAINTS = ROOT / "scripts" / "constraints.txt"


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _metadata_requirements() -> dict[str, list[str]]:
    """Every requirement string of the package metadata, by where it stands ("dependencies" or the extra's name)."""
    project = _project()
    found = {"dependencies": list(project["dependencies"])}
    found.update({extra: list(reqs) for extra, reqs in project["optional-dependencies"].items()})
    return found


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match is not None, requirement
    return match.group(1).lower().replace("_", "-")


def _lowest_constraints() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lowest_constraints", ROOT / "scripts" / "lowest_constraints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_exact_pin_in_dependencies_or_any_extra() -> None:
    pinned = [
        f"{where}: {requirement}"
        for where, requirements in _metadata_requirements().items()
        for requirement in requirements
        if "==" in requirement or "===" in requirement
    ]
    assert pinned == []


def test_torch_is_a_range_with_a_minimum() -> None:
    torch = [req for req in _metadata_requirements()["embeddings"] if _name(req) == "torch"]
    assert len(torch) == 1
    assert re.search(r">=\s*2\.\d+", torch[0]), torch[0]
    assert "==" not in torch[0] and "~=" not in torch[0]


def test_every_library_dependency_declares_a_minimum() -> None:
    """The lowest-versions run (scripts/test_lowest.sh) needs a `>=` minimum on each dependency it installs."""
    module = _lowest_constraints()
    requirements = module.library_requirements(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    pins = module.lowest_pins(requirements)
    assert len(pins) == len(requirements)
    assert "torch==2.13.0" in pins
    assert f"asyncpg=={_minimum('asyncpg')}" in pins
    assert not any(pin.startswith(("pytest", "ruff", "mypy")) for pin in pins)  # the dev tools stay at their newest


def _minimum(name: str) -> str:
    requirement = next(req for req in _project()["dependencies"] if _name(req) == name)
    match = re.search(r">=\s*([0-9][^,\s]*)", requirement)
    assert match is not None, requirement
    return match.group(1)


def test_lowest_pins_refuse_a_dependency_without_minimum() -> None:
    module = _lowest_constraints()
    assert module.lowest_pins(["numpy>=1.26", "torch>=2.2", "rich[jupyter]>=13"]) == [
        "numpy==1.26",
        "torch==2.13.0",
        "rich==13",
    ]
    try:
        module.lowest_pins(["numpy"])
    except ValueError as exc:
        assert "numpy" in str(exc)
    else:
        raise AssertionError("a requirement with no minimum was accepted")


def _scripts_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in SCRIPTS_CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"scripts/constraints.txt: {line!r} is not an exact pin"
        pins[_name(name)] = version
    return pins


def test_scripts_constraints_pin_torch_and_every_library_dependency() -> None:
    pins = _scripts_pins()
    assert pins["torch"] == "2.13.0"
    assert "pgvecstore" not in pins  # the checkout itself is installed editable, never constrained
    wanted = {_name(req) for reqs in _metadata_requirements().values() for req in reqs if not req.startswith("pgvec")}
    missing = sorted(wanted - pins.keys())
    assert missing == [], f"scripts/constraints.txt has no exact version for {missing}"


def test_bootstrap_installs_with_the_constraints_and_stamps_them() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert 'CONSTRAINTS="$ROOT/scripts/constraints.txt"' in bootstrap
    assert 'pip install -c "$CONSTRAINTS" -e' in bootstrap
    assert '"$ROOT/pyproject.toml" "$CONSTRAINTS" | sha256sum' in bootstrap
