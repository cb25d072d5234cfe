"""The twin's Feast feature repo (``definitions.py`` + ``feature_store.yaml``); see feast_store."""
