"""docs/grid-file.md is the schema and the registries written out: regenerated here and compared, so it cannot drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tlbench.grid import reference, tables
from tlbench.grid.grid_file import TOP_LEVEL_KEYS
from tlbench.grid.schema import EXPERIMENT_KEYS, FIELDS, Field
from tlbench.registries import archs, freezing
from tlbench.registries.augmentations import AUGMENTATIONS
from tlbench.registries.datasets import DATASETS

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "grid-file.md"


def test_docs_grid_file_md_is_the_reference_as_the_code_writes_it():
    assert PAGE.is_file(), f"{PAGE.relative_to(REPO)} is missing: run `{reference.COMMAND}`"
    assert PAGE.read_text() == reference.render(), f"{PAGE.relative_to(REPO)} is stale: run `{reference.COMMAND}`"


def test_the_command_prints_the_page_without_importing_torch():
    probe = ("import runpy, sys; runpy.run_module('tlbench.grid.reference', run_name='__main__'); "
             "sys.stderr.write(' '.join(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'ray')))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == reference.render()
    assert proc.stderr == "", f"the reference imported {proc.stderr.split()[:5]}: it must run where torch is not installed"


def test_every_key_and_every_word_is_on_the_page():
    page = reference.render()
    for dotted in FIELDS:
        assert f"| `{dotted}` |" in page, dotted
    for key in (*TOP_LEVEL_KEYS, *EXPERIMENT_KEYS, *tables.TABLE_KEYS, *tables.METRIC_KEYS, *tables.ROW_KEYS, *tables.CLAIM_KEYS):
        assert f"| `{key}` |" in page, key
    words = [*DATASETS.names(), *archs.HAND_WRITTEN, *freezing.words(), *AUGMENTATIONS.names(), *tables.METRICS]
    words += [*FIELDS["train.optimizer"].choices, *FIELDS["train.loss"].choices]
    for word in words:
        assert f"`{word}`" in page, word
    for key in freezing.keys():
        assert f"`{{{key}: " in page, key
    assert "defaults < experiment < axis value < profile < --set" in page
    assert "A grid file is code" in page and "`grid run` imports" in page


def test_a_key_the_loader_accepts_without_a_line_here_fails_the_render(monkeypatch):
    monkeypatch.setattr(tables, "ROW_KEYS", (*tables.ROW_KEYS, "weight"))
    with pytest.raises(ValueError, match="says nothing of weight"):
        reference.render()


def test_every_check_is_written_in_the_words_of_its_error():
    for dotted, field in FIELDS.items():
        if field.check is not None:
            assert reference.check_text(field), dotted
    assert reference.check_text(FIELDS["image_size"]) == "a value >= 16"
    assert reference.check_text(FIELDS["dataset.split"]) == FIELDS["dataset.split"].check([0.5])
    with pytest.raises(ValueError, match="add one it refuses"):
        reference.check_text(Field("int", 1, "doc", check=lambda v: None))


def test_values_are_spelt_as_a_grid_file_spells_them():
    assert reference.shown([1e-5, None, True, {"last": 3}]) == "[1e-05, null, true, {last: 3}]"
    assert reference.cell("head | none\nbn") == "head \\| none bn"
