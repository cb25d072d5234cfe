"""The ``drift_report`` component (see README.md, generated from its docstring).

The definition lives in ``twinops.pipelines.components.drift_report`` so the installed package, the
pipelines and this folder share one source; this file is the folder's entry point, as in
kubeflow/pipelines-components.
"""

from twinops.pipelines.components.drift_report import drift_report

__all__ = ["drift_report"]
