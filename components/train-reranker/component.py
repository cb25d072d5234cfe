"""The ``train-reranker`` component (see README.md, generated from its docstring).

The definition lives in ``twinops.pipelines.components.train_reranker`` so the installed package, the
pipelines and this folder share one source; this file is the folder's entry point, as in
kubeflow/pipelines-components.
"""

from twinops.pipelines.components.train_reranker import train_reranker

__all__ = ["train_reranker"]
