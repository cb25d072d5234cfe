"""twinops: an LLM Twin factory on Kubernetes and Kubeflow (feature, training, inference)."""

import logging

__version__ = "0.1.0"

# gptqmodel's int4 CPU kernels bring torchao into the core environment; on import it warns about
# every CUDA-only extension it cannot load and torch about its enum registrations. Harmless on any
# machine, and they would turn every one-line error and summary into five lines.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
