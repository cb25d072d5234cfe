"""``first_problem``: the one line every boundary makes of a pydantic ``ValidationError``."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator

from twinops.errors import first_problem


class Trainer(BaseModel):
    max_steps: int = Field(ge=1)

    @field_validator("max_steps")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("use an even number of steps")
        return value


class Job(BaseModel):
    name: str
    trainer: Trainer


def _problem(data, **options):
    with pytest.raises(ValidationError) as caught:
        Job.model_validate(data)
    return first_problem(caught.value, **options)


def test_names_the_nested_field_the_value_and_the_complaint() -> None:
    problem = _problem({"name": "a", "trainer": {"max_steps": "many"}})
    assert problem.where == "trainer.max_steps" and problem.value == "many" and problem.others == 0
    assert problem.line() == f"trainer.max_steps: {problem.message}" and "integer" in problem.message


def test_drops_pydantics_value_error_prefix() -> None:
    problem = _problem({"name": "a", "trainer": {"max_steps": 3}})
    assert problem.line() == "trainer.max_steps: use an even number of steps"


def test_counts_the_other_problems_and_names_the_top_level() -> None:
    problem = _problem({"trainer": {}})
    assert problem.others == 1 and problem.kind == "missing"
    with pytest.raises(ValidationError) as caught:
        Job.model_validate("not a mapping")
    whole = first_problem(caught.value)
    assert whole.where == "" and whole.line(top="body").startswith("body: ")


def test_skips_location_roots() -> None:
    assert _problem({"name": "a", "trainer": {"max_steps": 0}}, skip=("trainer",)).where == "max_steps"
