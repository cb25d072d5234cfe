"""The registry, gate and alias paths through a real MLflow REST server, the way `make run` reaches them.

The same tests as ``tests/training/test_registry.py`` (register, link, nominate, release, reject,
promote by hand) and ``tests/infra/test_registry.py`` (aliases and versions resolved to folders,
what is missing said in one line), imported so each is written once, with MLflow behind ``mlflow
server`` (``mlflow_server_settings``) instead of a sqlite file the client opens itself: whatever the
REST store answers differently (aliases, tags, search filters, missing names and versions) fails here.
"""

from __future__ import annotations

import pytest
from tests.infra.test_registry import (  # noqa: F401 - collected here, on the REST store
    register,
    test_alias_and_version_resolve_to_the_registered_folder,
    test_champion_or_none,
    test_unknown_alias_version_and_name_say_what_to_fix,
    test_version_whose_folder_is_gone_is_model_not_found,
)
from tests.training.test_registry import (  # noqa: F401 - collected here, on the REST store
    test_a_first_llm_version_must_beat_the_base_model,
    test_a_later_version_is_compared_with_the_champion_rescored_in_the_same_evaluation,
    test_a_manual_promotion_is_recorded_as_such,
    test_a_missing_metric_blocks_promotion,
    test_a_model_without_a_canary_is_released_by_its_gate_never_as_a_manual_override,
    test_a_version_whose_canary_was_rolled_back_is_never_nominated_again,
    test_bad_input_is_one_line_and_registers_nothing,
    test_model_version_links_to_its_dataset_version,
    test_the_reranker_gate_refuses_a_reranker_worse_than_cosine_or_within_noise,
)

from twinops.settings import Settings

pytestmark = pytest.mark.slow  # one server for the session, emptied before each test


@pytest.fixture
def mlflow_settings(mlflow_server_settings: Settings) -> Settings:
    """Every fixture and test of this module that asks for MLflow gets the REST server."""
    assert mlflow_server_settings.mlflow_tracking_uri.startswith("http://127.0.0.1:")
    return mlflow_server_settings
