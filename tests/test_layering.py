"""The house's layering, read from the source with ``ast``: imports only run down, never sideways on
a floor, and no two modules import each other (directly or round a longer loop, lazily or not).

Floors (docs: the house table): ground -> infra -> feature -> training/inference -> operations ->
pipelines -> cli. Within floor 1 the order is models -> infra -> services: the clients in infra
never import the part that starts the embedded servers. A new import that breaks this fails here
with the file and line to change; move the shared piece down instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "twinops"

# Bottom to top. A part may import parts on lower rows only; parts on one row never import
# each other (sideways). Each top-level package or module of src/twinops must be listed.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("twinops", "errors"),  # the package root holds only __version__
    ("settings", "domain"),  # floor 0: the ground
    ("models",),  # floor 1 ...
    ("infra",),
    ("services",),
    ("etl", "features"),  # floor 2: feature
    ("datasets", "training", "quantize", "evaluation", "serving"),  # floor 3: training and inference
    ("monitoring", "rollout"),  # floor 4: operations
    ("pipelines",),  # floor 5
    ("cli",),  # floor 6: the face
    ("__main__",),
)
ROW = {part: row for row, parts in enumerate(LAYERS) for part in parts}


def module_names(source: Path) -> dict[str, Path]:
    """``twinops.a.b`` -> file, for every module (a package is its ``__init__``)."""
    names = {}
    for file in source.rglob("*.py"):
        parts = file.relative_to(source.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = file
    return names


def imports(source: Path) -> list[tuple[str, str, str]]:
    """(importing module, imported twinops module, file:line) for every import, at any depth of the code."""
    modules = module_names(source)
    root = source.name

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = []
    for module, file in modules.items():
        package = module if file.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the submodule when there is one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target.split(".")[0] != root:
                    continue
                resolved = known(target)
                if resolved and resolved != module:
                    where = f"{file.relative_to(source.parent)}:{node.lineno}"
                    found.append((module, resolved, where))
    return found


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def layering_violations(source: Path) -> list[str]:
    """Upward and sideways imports between parts, and parts missing from ``LAYERS``."""
    problems = []
    for module, target, where in imports(source):
        here, there = part(module), part(target)
        if here == there:
            continue
        for name in (here, there):
            if name not in ROW:
                problems.append(f"{name} is on no floor: add it to LAYERS in tests/test_layering.py")
        if here not in ROW or there not in ROW:
            continue
        if ROW[there] > ROW[here]:
            problems.append(f"upward: {module} imports {target} ({where})")
        elif ROW[there] == ROW[here]:
            problems.append(f"sideways: {module} imports {target} ({where})")
    return sorted(set(problems))


def module_cycles(source: Path) -> list[list[str]]:
    """Sets of modules that import one another round a loop (Tarjan's strongly connected components)."""
    graph: dict[str, set[str]] = {name: set() for name in module_names(source)}
    for module, target, _ in imports(source):
        graph[module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_every_part_is_on_a_floor() -> None:
    parts = {part(name) for name in module_names(SOURCE)}
    assert parts <= set(ROW), f"parts on no floor: {sorted(parts - set(ROW))}"


def test_imports_run_down_only() -> None:
    problems = layering_violations(SOURCE)
    assert not problems, "move the shared piece down:\n" + "\n".join(problems)


def test_no_module_imports_itself_round_a_loop() -> None:
    cycles = module_cycles(SOURCE)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_protocol_code_imports_no_model_code() -> None:
    """House: protocol apart from engine. ``serving.protocol`` owns the wire and the small types a
    model yields; models and the engine import it, never the other way round."""
    protocol = "twinops.serving.protocol"
    problems = [
        f"{module} imports {target} ({where})"
        for module, target, where in imports(SOURCE)
        if module.startswith(protocol)
        and part(target) == "serving"
        and not (target == protocol or target.startswith(f"{protocol}."))
    ]
    assert not problems, "move the type into serving.protocol:\n" + "\n".join(problems)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A small twinops tree in the right shape: cli -> training -> infra -> errors."""
    root = tmp_path / "twinops"
    files = {
        "__init__.py": "",
        "errors.py": "class TwinopsError(Exception): ...\n",
        "infra/__init__.py": "",
        "infra/client.py": "from twinops.errors import TwinopsError\n",
        "training/__init__.py": "",
        "training/train.py": "from twinops.infra import client\n",
        "cli/__init__.py": "from twinops.training.train import *\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_catch_a_new_upward_import_sideways_import_and_cycle(toy: Path) -> None:
    assert layering_violations(toy) == [] and module_cycles(toy) == []

    # A trainer drawing a bar with the CLI's helper, imported lazily inside a function.
    (toy / "training" / "train.py").write_text(
        "from twinops.infra import client\n\ndef run():\n    from twinops.cli import progress\n"
    )
    assert any(
        p.startswith("upward: twinops.training.train imports twinops.cli") for p in layering_violations(toy)
    )
    assert ["twinops.cli", "twinops.training.train"] in module_cycles(toy)

    (toy / "training" / "train.py").write_text("from twinops.infra import client\n")
    (toy / "evaluation").mkdir()
    (toy / "evaluation" / "__init__.py").write_text("")
    (toy / "evaluation" / "score.py").write_text("from ..training import train\n")  # relative, sideways
    assert any(p.startswith("sideways: twinops.evaluation.score") for p in layering_violations(toy))

    (toy / "etl").mkdir()
    (toy / "etl" / "__init__.py").write_text("")
    (toy / "etl" / "feeds.py").write_text("from twinops.etl.web import fetch\n")
    (toy / "etl" / "web.py").write_text("def collect():\n    from twinops.etl import feeds\n")
    assert ["twinops.etl.feeds", "twinops.etl.web"] in module_cycles(toy)
