"""``twinops pipeline compile``: the pipelines as KFP IR YAML in ``pipelines/compiled/``.

The YAML is checked in (uploadable in the Kubeflow Pipelines UI) and must be reproducible: the
same sources and image settings give byte-identical files, so a test can catch stale ones.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twinops.pipelines.registry import canonical_name, get_pipeline, pipeline_names

DEFAULT_OUTPUT_DIR = Path("pipelines/compiled")


def compile_pipeline(name: str, path: Path, *, profile: object = None) -> Path:
    """Compile one pipeline for the cluster target into ``path``."""
    from kfp import compiler

    pipeline = get_pipeline(canonical_name(name), target="cluster", profile=profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    path.write_text(_sorted_header_defaults(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


_HEADER_DICT_DEFAULT = re.compile(r"^(#\s+\w+: dict \[Default: )(\{.*\})(\])$", re.MULTILINE)


def _sorted_header_defaults(text: str) -> str:
    """The compiled file with its header's dict defaults in key order. KFP prints a dict parameter's
    default from a protobuf Struct, whose key order changes from one process to the next: without
    this the checked-in file would be stale every other compile."""

    def sort(match: re.Match) -> str:
        value = ast.literal_eval(match[2])
        return f"{match[1]}{dict(sorted(value.items()))!r}{match[3]}"

    return _HEADER_DICT_DEFAULT.sub(sort, text)


def compile_all(output_dir: Path = DEFAULT_OUTPUT_DIR, names: list[str] | None = None) -> list[Path]:
    """Compile ``names`` (default: every pipeline) into ``output_dir/<name>.yaml``."""
    return [
        compile_pipeline(name, Path(output_dir) / f"{canonical_name(name)}.yaml")
        for name in (names or pipeline_names())
    ]
