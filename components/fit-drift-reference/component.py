"""The ``fit_drift_reference`` component (see README.md, generated from its docstring).

The definition lives in ``twinops.pipelines.components.fit_drift_reference`` so the installed package, the
pipelines and this folder share one source; this file is the folder's entry point, as in
kubeflow/pipelines-components.
"""

from twinops.pipelines.components.fit_drift_reference import fit_drift_reference

__all__ = ["fit_drift_reference"]
