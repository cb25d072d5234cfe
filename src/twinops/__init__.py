"""twinops: an LLM Twin factory on Kubernetes and Kubeflow (feature, training, inference)."""

__version__ = "0.1.0"
