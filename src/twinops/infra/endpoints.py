"""Where each service is: the ``TWINOPS_*`` setting, else what ``twinops services up`` recorded.

Every client (pymongo, MLflow) asks here; ``twinops.services`` starts the embedded servers and
writes their records (``twinops.infra.service_state``), so clients never import the starter.
"""

from __future__ import annotations

from twinops.errors import ServiceUnavailable
from twinops.infra.service_state import ServicesState
from twinops.settings import Settings


def _require(name: str, setting: str, settings: Settings) -> str:
    record = ServicesState.load(settings.services_state_file).services.get(name)
    if record is None or not record.running or not record.uri:
        raise ServiceUnavailable(
            f"{name} is not running: run `twinops services up` or set {setting}", setting=setting
        )
    return record.uri


def mongodb_uri(settings: Settings) -> str:
    """The MongoDB URI every client uses: the setting, else the embedded server's."""
    return settings.mongodb_uri or _require("mongodb", "TWINOPS_MONGODB_URI", settings)


def mlflow_tracking_uri(settings: Settings) -> str:
    """The MLflow tracking URI: the setting, else the embedded server's."""
    return settings.mlflow_tracking_uri or _require("mlflow", "TWINOPS_MLFLOW_TRACKING_URI", settings)
