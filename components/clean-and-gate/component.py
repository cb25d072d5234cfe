"""The ``clean-and-gate`` component (see README.md, generated from its docstring).

The definition lives in ``twinops.pipelines.components.clean_and_gate`` so the installed package, the
pipelines and this folder share one source; this file is the folder's entry point, as in
kubeflow/pipelines-components.
"""

from twinops.pipelines.components.clean_and_gate import clean_and_gate

__all__ = ["clean_and_gate"]
