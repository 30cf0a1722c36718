"""Every family's task has one descriptor (wildtrain.tasks), found from a model card or an export's output; an
unknown one is one clear line."""

from __future__ import annotations

import importlib

import pytest

from wildtrain.contract import ModelCard
from wildtrain.errors import WildtrainError
from wildtrain.families import FAMILIES
from wildtrain.tasks import OUTPUTS, TASKS, task_of, task_of_output


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_s_task_has_a_descriptor(family):
    task = importlib.import_module(f"wildtrain.families.{family}").FAMILY.task
    assert TASKS[task].name == task


def test_card_and_export_lead_to_the_same_descriptor():
    assert len(OUTPUTS) == len(TASKS)
    for name, task in TASKS.items():
        card = ModelCard(family="x", task=name, framework="f", architecture="a", class_names=["a"], weights="w",
                         input={})
        assert task_of(card) is task_of_output(task.output) is task


def test_an_unknown_task_or_output_is_one_clear_line():
    card = ModelCard(family="x", task="keypoints", framework="f", architecture="a", class_names=["a"], weights="w",
                     input={})
    with pytest.raises(WildtrainError, match="unknown task 'keypoints'"):
        task_of(card)
    with pytest.raises(WildtrainError, match="unknown output 'heatmap'"):
        task_of_output("heatmap")
