"""Monitoring (floor 4): feature and embedding drift against what the champion was trained on.

- ``config``: ``DriftConfig`` (``configs/drift/default.yaml``), the one place for thresholds;
- ``reference``: the reference texts of a model version, embedded, reduced and saved beside it;
- ``detectors``: evidently's embedding drift methods with calibrated p-values (core environment);
- ``alibi``: alibi-detect's ``MMDDrift``/``LSDDDrift`` on PyTorch (``.venv-drift`` only);
- ``features`` and ``report``: evidently's feature drift report, HTML + JSON, logged to MLflow;
- ``events`` and ``service``: the online detector fed by KServe's logger (CloudEvents);
- ``retrain``: the retraining trigger with its cool-down and record (the runner is injected).
"""
