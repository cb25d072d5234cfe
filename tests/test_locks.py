"""The lock files hold the whole dependency set of each environment, and are not stale.

``make lock`` resolves ``locks/*.txt`` with uv from ``pyproject.toml`` and ``locks/*.in``; the
Makefile installs every environment from them with ``--no-deps``, so a machine gets exactly the
locked versions. This test fails when an input changed without ``make lock``: a requirement the
lock does not satisfy (added, or its range moved), or a locked top-level package no input asks
for any more (removed). torch is left out of the locks (each environment installs its own build
first; the locks are resolved against the CPU wheel), so no lock may name torch, triton or a
CUDA ``nvidia-*`` package.

The Makefile and the images install from the same locks: each ``images/*/Dockerfile`` (parsed, no
Docker engine here) installs torch first from its wheel index at ``constraints.txt``'s pin, then its
environment's lock ``--no-deps``, then twinops ``--no-deps``, and nothing resolves afresh.
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
PYPROJECT = "twinops (pyproject.toml)"
NOT_LOCKED = {"torch"}  # installed per environment first: the CPU wheel here, CUDA in GPU images


@dataclass(frozen=True)
class Environment:
    lock: str
    extras: tuple[str, ...] | None  # pyproject extras; None: pyproject is not an input
    requirement_files: tuple[str, ...] = ()


ENVIRONMENTS = (
    Environment("core.txt", ("ml", "serve", "dev")),  # .venv
    Environment("quantize.txt", (), ("quantize.in",)),  # .venv-quantize
    Environment("mongo.txt", None, ("mongo.in",)),  # .venv-mongo
    Environment("drift.txt", (), ("drift.in",)),  # .venv-drift
)


# images/<family>/Dockerfile -> the lock of the environment it carries (Makefile `images`).
IMAGE_LOCKS = {
    "data": "core.txt",
    "train": "core.txt",
    "serve": "core.txt",
    "quantize": "quantize.txt",
    "drift": "drift.txt",
}
TORCH_INDEXES = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu128",
}


def read_lock(path: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """({package: version}, {package: what it is locked for ("twinops (pyproject.toml)", "-r ...")})."""
    pins: dict[str, str] = {}
    via: dict[str, set[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if pin:
            current = canonicalize_name(pin[1])
            pins[current] = pin[2]
            via[current] = set()
            continue
        reason = re.match(r"^\s+#\s+(?:via\s+)?(.+?)\s*$", line)
        if current and reason and reason[1] != "via":
            via[current].add(reason[1])
    return pins, via


def requirements(env: Environment) -> list[tuple[Requirement, str]]:
    """The environment's direct requirements (markers applied) and the input that names each."""
    found: list[tuple[Requirement, str]] = []
    if env.extras is not None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        lines = list(project["dependencies"])
        for extra in env.extras:
            lines += project["optional-dependencies"][extra]
        found += [(Requirement(line), PYPROJECT) for line in lines]
    for name in env.requirement_files:
        text = (LOCKS / name).read_text(encoding="utf-8")
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                found.append((Requirement(line), f"-r locks/{name}"))
    return [(r, source) for r, source in found if r.marker is None or r.marker.evaluate({"extra": ""})]


def constraints() -> dict[str, Requirement]:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    parsed = [Requirement(line) for line in (x.split("#", 1)[0].strip() for x in lines) if line]
    return {canonicalize_name(r.name): r for r in parsed}


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda env: env.lock)
def test_lock_satisfies_every_requirement(env: Environment) -> None:
    pins, _ = read_lock(LOCKS / env.lock)
    stale = []
    for requirement, source in requirements(env):
        name = canonicalize_name(requirement.name)
        if name in NOT_LOCKED:
            pinned = constraints()[name].specifier
            assert all(requirement.specifier.contains(s.version) for s in pinned), (requirement, pinned)
            continue
        version = pins.get(name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            stale.append(f"{requirement} (from {source}): lock has {version or 'nothing'}")
    assert not stale, f"locks/{env.lock} is stale, run `make lock`:\n" + "\n".join(stale)


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda env: env.lock)
def test_lock_has_no_top_level_package_that_nothing_asks_for(env: Environment) -> None:
    _, via = read_lock(LOCKS / env.lock)
    wanted = {canonicalize_name(r.name) for r, _ in requirements(env)}
    inputs = {PYPROJECT, *(f"-r locks/{name}" for name in env.requirement_files)}
    orphans = sorted(name for name, why in via.items() if why & inputs and name not in wanted)
    assert not orphans, f"locks/{env.lock} is stale (no input asks for {orphans}): run `make lock`"


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda env: env.lock)
def test_lock_keeps_torch_out_and_holds_the_constraints(env: Environment) -> None:
    pins, _ = read_lock(LOCKS / env.lock)
    gpu = sorted(
        name for name in pins if name.startswith(("nvidia-", "triton", "cuda-")) or name in NOT_LOCKED
    )
    assert not gpu, f"locks/{env.lock} names {gpu}: resolve against the CPU torch wheel (`make lock`)"
    for name, constraint in constraints().items():
        if name in pins:
            assert constraint.specifier.contains(pins[name]), f"{name}=={pins[name]} breaks {constraint}"


def test_read_lock_sees_pins_and_what_asked_for_them(tmp_path: Path) -> None:
    """The parser the checks rely on, on uv's two annotation shapes."""
    lock = tmp_path / "x.txt"
    lock.write_text(
        "# header\nalpha==1.0\n    # via twinops (pyproject.toml)\n"
        "Beta_Pkg==2.0rc1\n    # via\n    #   alpha\n    #   -r locks/x.in\n"
    )
    pins, via = read_lock(lock)
    assert pins == {"alpha": "1.0", "beta-pkg": "2.0rc1"}
    assert via == {"alpha": {PYPROJECT}, "beta-pkg": {"alpha", "-r locks/x.in"}}


def test_a_changed_input_makes_the_lock_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A floor raised past the locked version, and a dependency removed, both fail the checks."""
    copy = tmp_path / "project"
    shutil.copytree(LOCKS, copy / "locks")
    shutil.copy(ROOT / "constraints.txt", copy)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "ROOT", copy)
    monkeypatch.setattr(this, "LOCKS", copy / "locks")
    core = ENVIRONMENTS[0]

    (copy / "pyproject.toml").write_text(pyproject.replace('"rich>=13"', '"rich>=999"'))
    with pytest.raises(AssertionError, match="rich>=999"):
        test_lock_satisfies_every_requirement(core)

    (copy / "pyproject.toml").write_text(pyproject.replace('  "psutil>=5.9",\n', ""))
    with pytest.raises(AssertionError, match="psutil"):
        test_lock_has_no_top_level_package_that_nothing_asks_for(core)


def test_makefile_installs_each_environment_from_its_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for env in ENVIRONMENTS:
        assert re.search(rf"install \$\(PIP_FLAGS\) --no-deps -r locks/{re.escape(env.lock)}\n", makefile), (
            f"the Makefile does not install locks/{env.lock} with --no-deps"
        )


def pip_installs(dockerfile: Path) -> list[tuple[int, str]]:
    """(index of the instruction, command) for each `pip install` the Dockerfile runs, in order."""
    structure = DockerfileParser(path=str(dockerfile)).structure
    return [
        (index, command.strip())
        for index, item in enumerate(structure)
        if item["instruction"] == "RUN"
        for command in item["value"].split("&&")
        if "pip install" in command
    ]


def image_problems(dockerfile: Path, lock: str) -> list[str]:
    """What keeps the image from carrying exactly its environment's lock (empty when nothing)."""
    parser = DockerfileParser(path=str(dockerfile))
    problems = []
    copied: dict[str, int] = {}  # source -> index of its COPY
    for index, item in enumerate(parser.structure):
        if item["instruction"] == "COPY":
            for source in item["value"].split()[:-1]:
                copied.setdefault(source.rstrip("/"), index)
                if not (ROOT / source).exists():
                    problems.append(f"COPY {source}: no such file in the repository")
    installs = pip_installs(dockerfile)
    if not installs:
        return [*problems, "no pip install"]
    (_, torch), *rest = installs
    gpu = parser.baseimage.startswith("nvidia/cuda")
    index_url = re.search(r"--index-url\s+(\S+)", torch)
    url = (index_url[1].strip('"') if index_url else "").replace(
        "${TORCH_INDEX_URL}", parser.args.get("TORCH_INDEX_URL", "")
    )
    if not re.search(r"-c constraints\.txt\s+torch$", torch):
        problems.append(f"first install is not torch at constraints.txt's pin: {torch}")
    if url != TORCH_INDEXES["cuda" if gpu else "cpu"]:
        problems.append(f"torch from {url or 'PyPI'}, not the {'CUDA' if gpu else 'CPU'} wheel index")
    for _, command in rest:
        if "--no-deps" not in command.split() or "-c constraints.txt" in command:
            problems.append(f"resolves afresh instead of installing the lock: {command}")
    wanted = f"--no-deps -r locks/{lock}"
    if not rest or not rest[0][1].endswith(wanted):
        problems.append(f"the install after torch is not `{wanted}`")
    if not any(command.endswith("--no-deps .") for _, command in rest):
        problems.append("twinops itself is not installed `--no-deps .`")
    for index, command in installs:
        for requirement_file in re.findall(r"-r\s+(\S+)", command):
            if copied.get(requirement_file, index) >= index:
                problems.append(f"{requirement_file} is not copied before it is installed")
    lock_layer = rest[0][0] if rest else 0
    if copied.get("src", lock_layer) < lock_layer:
        problems.append("COPY src comes before the lock's layer: every source change reinstalls it")
    return problems


def test_every_image_is_mapped_to_a_checked_lock() -> None:
    families = {path.parent.name for path in (ROOT / "images").glob("*/Dockerfile")}
    assert families == set(IMAGE_LOCKS), "images/*/Dockerfile and IMAGE_LOCKS disagree"
    assert set(IMAGE_LOCKS.values()) <= {env.lock for env in ENVIRONMENTS}


@pytest.mark.parametrize("family", sorted(IMAGE_LOCKS))
def test_image_installs_exactly_its_environments_lock(family: str) -> None:
    problems = image_problems(ROOT / "images" / family / "Dockerfile", IMAGE_LOCKS[family])
    assert not problems, f"images/{family}/Dockerfile: " + "; ".join(problems)


def test_an_image_that_resolves_afresh_is_caught(tmp_path: Path) -> None:
    """The former install (`-c constraints.txt ".[ml]"`, a GPU image on the CPU index) fails the check."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04\n"
        "COPY pyproject.toml constraints.txt README.md ./\nCOPY src ./src\nCOPY locks/nope.txt ./locks/\n"
        'RUN python -m pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \\\n'
        '    && python -m pip install -c constraints.txt ".[ml]"\n'
    )
    problems = "\n".join(image_problems(dockerfile, "core.txt"))
    assert "COPY locks/nope.txt: no such file" in problems
    assert "not torch at constraints.txt's pin" in problems
    assert "not the CUDA wheel index" in problems
    assert (
        'resolves afresh instead of installing the lock: python -m pip install -c constraints.txt ".[ml]"'
        in problems
    )
    assert "`--no-deps -r locks/core.txt`" in problems
    assert "--no-deps ." in problems
