"""The package's structure: no module imports itself back, at import time or lazily inside a function, and
`part-` names live in one module."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "synthvlm").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _runtime_imports(name: str, path: Path, modules: dict[str, Path], *, lazy: bool = False) -> set[str]:
    """synthvlm modules imported at module level (TYPE_CHECKING blocks and function bodies excluded), or with
    `lazy` anywhere in the module (function bodies and type-only imports included); an import of one's own
    parent package is no cycle (it is initialised first)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree) if lazy else tree.body:
        if not lazy and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base]).rstrip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in found:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            resolved.add(target)
    return resolved


def _cycles(*, lazy: bool) -> list[list[str]]:
    modules = _modules()
    graph = {name: _runtime_imports(name, path, modules, lazy=lazy) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*trail[trail.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_module_level_import_cycle():
    assert _cycles(lazy=False) == []


def test_no_module_imports_upward_even_lazily():
    # Knowledge lives below its users: a function-level import that closes a circle ties two layers
    # together as much as a module-level one, it only fails later.
    assert _cycles(lazy=True) == []


def test_the_shard_name_pattern_is_spelled_once():
    files = (SRC / "synthvlm").rglob("*.py")
    spelled = sorted(str(path.relative_to(SRC)) for path in files if "part-{" in path.read_text())
    assert spelled == ["synthvlm/core/layout.py"]


def test_every_extra_an_error_names_exists():
    import re
    import tomllib

    project = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    named = {
        (path.name, name)
        for path in (SRC / "synthvlm").rglob("*.py")
        for name in re.findall(r"synthvlm\[([a-z0-9,-]+)\]", path.read_text())
    }
    assert named and {(file, name) for file, name in named if not set(name.split(",")) <= extras} == set()
