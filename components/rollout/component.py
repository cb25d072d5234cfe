"""The ``rollout`` component (see README.md, generated from its docstring).

The definition lives in ``twinops.pipelines.components.rollout`` so the installed package, the
pipelines and this folder share one source; this file is the folder's entry point, as in
kubeflow/pipelines-components.
"""

from twinops.pipelines.components.rollout import rollout

__all__ = ["rollout"]
