"""The report's builders that need no study: question 1's parameter table is Keras' model.summary() row for row."""

from __future__ import annotations

import re

import pytest

from fashion_lab import MLPClassifier, keras_summary
from fashion_lab.studies.report import parameter_table


@pytest.mark.parametrize("num_classes", [10, 49])
def test_parameter_table_has_the_summarys_rows(num_classes: int) -> None:
    table = parameter_table(num_classes)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:-1]]
    printed = re.findall(
        r"^ (\w+ \(\w+\)) +(\(None, \d+\)) +([\d,]+)$", keras_summary(MLPClassifier(num_classes=num_classes)), re.M
    )
    assert [tuple(row[:3]) for row in cells] == printed
    total = re.search(r"Total params: ([\d,]+)", keras_summary(MLPClassifier(num_classes=num_classes))).group(1)
    assert table[-1] == f"| **total** | | **{total}** | |"


def test_parameter_table_explains_each_dense_count() -> None:
    assert parameter_table(10) == [
        "| layer | output shape | parameters | why |",
        "|---|---|---:|---|",
        "| flatten (Flatten) | (None, 784) | 0 | |",
        "| dense (Dense) | (None, 128) | 100,480 | 784 inputs × 128 units + 128 biases |",
        "| dropout (Dropout) | (None, 128) | 0 | |",
        "| dense_1 (Dense) | (None, 10) | 1,290 | 128 inputs × 10 units + 10 biases |",
        "| **total** | | **101,770** | |",
    ]
