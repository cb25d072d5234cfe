import os

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient

uri = os.environ["TWINOPS_MLFLOW_TRACKING_URI"]
name, password = os.environ["MLFLOW_READER_USERNAME"], os.environ["MLFLOW_READER_PASSWORD"]
accounts = AuthServiceClient(uri)
try:
    accounts.create_user(name, password)
    print(f"created the MLflow readers' account {name}")
except MlflowException as error:
    if error.error_code != "RESOURCE_ALREADY_EXISTS":
        raise
    accounts.update_user_password(name, password)
    print(f"the MLflow readers' account {name} exists: its password follows the Secret")
registry = MlflowClient(uri)
for model in ("twin-llm", "twin-reranker"):
    try:
        registry.create_registered_model(model)
        print(f"created the registered model {model}, owned by the writers")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
