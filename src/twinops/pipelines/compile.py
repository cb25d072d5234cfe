"""``twinops pipeline compile``: the pipelines as KFP IR YAML in ``pipelines/compiled/``.

The YAML is checked in (uploadable in the Kubeflow Pipelines UI) and must be reproducible: the
same sources and image settings give byte-identical files, so a test can catch stale ones.
"""

from __future__ import annotations

from pathlib import Path

from twinops.pipelines.registry import canonical_name, get_pipeline, pipeline_names

DEFAULT_OUTPUT_DIR = Path("pipelines/compiled")


def compile_pipeline(name: str, path: Path, *, profile: object = None) -> Path:
    """Compile one pipeline for the cluster target into ``path``."""
    from kfp import compiler

    pipeline = get_pipeline(canonical_name(name), target="cluster", profile=profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    return path


def compile_all(output_dir: Path = DEFAULT_OUTPUT_DIR, names: list[str] | None = None) -> list[Path]:
    """Compile ``names`` (default: every pipeline) into ``output_dir/<name>.yaml``."""
    return [
        compile_pipeline(name, Path(output_dir) / f"{canonical_name(name)}.yaml")
        for name in (names or pipeline_names())
    ]
