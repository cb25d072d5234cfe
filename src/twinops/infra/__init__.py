"""Storage and service clients: small repository classes around pymongo, Qdrant and MLflow."""
