"""Inference: the twinops model servers on kserve, and the protocol code they speak (``protocol``).

One module per runtime, run as ``python -m twinops.serving.<runtime>``: it holds that runtime's
kserve model class, its own flags and its ``main()`` (``llm``, ``rag``, ``embedder``, ``reranker``;
``router`` serves no model, so its module holds the app and ``main()``). What runtimes share sits in
modules that nobody runs: ``server`` (kserve's flags, start-up, exit codes), ``engine`` (continuous
batching), ``encoders`` (the sentence-transformers base), ``protocol`` (the wire).
"""
