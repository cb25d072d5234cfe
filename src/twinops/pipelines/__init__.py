"""Kubeflow Pipelines: components, pipelines, compile, local runs and cluster submission.

The same pipeline definitions run on a cluster (compiled YAML, ``twinops pipeline submit``) and on
one machine through ``kfp.local`` (``twinops pipeline run-local``). Import the submodules; this
package stays import-light so ``twinops --help`` does not load kfp.
"""
