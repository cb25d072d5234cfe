"""The ``chunk-embed-load`` component (see README.md, generated from its docstring).

The definition lives in ``twinops.pipelines.components.chunk_embed_load`` so the installed package, the
pipelines and this folder share one source; this file is the folder's entry point, as in
kubeflow/pipelines-components.
"""

from twinops.pipelines.components.chunk_embed_load import chunk_embed_load

__all__ = ["chunk_embed_load"]
