"""The Inference side: kserve model servers for the twin LLM, the reranker and RAG."""
