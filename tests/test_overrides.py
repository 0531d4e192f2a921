"""``--set key.sub=value`` overrides: YAML values, new sections, errors that name the item."""

from __future__ import annotations

import pytest

from common.overrides import OverrideError, apply_overrides


def test_values_are_yaml_and_missing_sections_are_created() -> None:
    data = {"train": {"steps": 10}}
    out = apply_overrides(data, ["train.steps=20", "optim.betas=[0.8, 0.9]", "flag=off",
                                 "name=a=b", "empty="])
    assert out is data
    assert data == {"train": {"steps": 20}, "optim": {"betas": [0.8, 0.9]}, "flag": False,
                    "name": "a=b", "empty": None}


def test_no_overrides_leave_the_data_alone() -> None:
    assert apply_overrides({"a": 1}, []) == {"a": 1}


@pytest.mark.parametrize(("data", "item", "message"), [
    ({}, "train.steps", r"^--set 'train.steps': expected key.sub=value$"),
    ({"train": 5}, "train.steps=3", r"^--set train.steps: train is not a section$"),
    ({}, "a=[1, 2", r"^--set 'a=\[1, 2': value is not YAML: "),
])
def test_a_bad_item_is_named(data: dict, item: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message):
        apply_overrides(data, ["ok=1", item])


def test_the_error_is_a_value_error() -> None:
    assert issubclass(OverrideError, ValueError)
