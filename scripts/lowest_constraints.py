"""The lowest versions pyproject.toml allows for the library's own dependencies, as a pip constraints file.

    python scripts/lowest_constraints.py [pyproject.toml] > constraints.txt

Reads [project] dependencies and the library's extras (LIBRARY_EXTRAS: not `dev` or `bench`, whose tools may stay
at their newest) and prints `name==minimum` for each, so `pip install -c constraints.txt -e ".[all,dev]"` installs
the library's direct dependencies at the lowest versions the metadata admits (what uv calls lowest-direct; their
own dependencies resolve as usual). scripts/test_lowest.sh runs the tests with it. torch is the one exception:
PyPI's old torch wheels are CUDA builds of several GB, so it stays at the 2.13.0 (CPU build) that lies on the
project's machines (TORCH_KEPT). A library dependency with no `>=` minimum is an error: every one must say it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LIBRARY_EXTRAS = ("langchain", "llamaindex", "embeddings", "cli")
TORCH_KEPT = "torch==2.13.0"
_REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*)")
_MINIMUM = re.compile(r">=\s*(?P<version>[0-9][^,\s]*)")


def library_requirements(pyproject: dict[str, object]) -> list[str]:
    """The requirement strings of [project] dependencies and of the LIBRARY_EXTRAS, in that order."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    extras = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    for extra in LIBRARY_EXTRAS:
        found.extend(extras[extra])
    return found


def lowest_pins(requirements: list[str]) -> list[str]:
    """`name==minimum` for each requirement (TORCH_KEPT for torch); ValueError names one with no `>=` minimum."""
    pins: list[str] = []
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise ValueError(f"cannot read the requirement {requirement!r}")
        name = match.group("name").lower().replace("_", "-")
        if name == "torch":
            pins.append(TORCH_KEPT)
            continue
        minimum = _MINIMUM.search(match.group("spec"))
        if minimum is None:
            raise ValueError(f"the requirement {requirement!r} has no `>=` minimum to test")
        pins.append(f"{name}=={minimum.group('version')}")
    return pins


def main(argv: list[str]) -> int:
    """Print the constraints for the pyproject.toml named in argv (default: this checkout's)."""
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    pins = lowest_pins(library_requirements(tomllib.loads(path.read_text())))
    print(f"# The lowest versions {path.name} allows (scripts/lowest_constraints.py); torch kept at 2.13.0.")
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
