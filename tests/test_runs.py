"""utils/runs.py: a stored run is reused only while every file it was made from is byte for byte the same."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utils import runs


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_FRESH_RUNS", raising=False)
    notebook, module = tmp_path / "nb.ipynb", tmp_path / "module.py"
    notebook.write_text("{}")
    module.write_text("x = 1\n")
    store = runs.RunCache("demo")
    store.store("nb", [notebook], [str(module)], "env 1", {"seconds": 3.0}, '{"cells": []}')
    return store, notebook, module


def test_a_run_is_reused_while_nothing_it_was_made_from_changed(cache):
    store, notebook, module = cache
    found = store.lookup("nb", [notebook], "env 1")
    assert found is not None and found.record["seconds"] == 3.0 and found.files == [str(module)]
    assert json.loads(found.notebook.read_text()) == {"cells": []}


@pytest.mark.parametrize("change", ["notebook", "imported file", "imported file gone", "environment", "fresh"])
def test_any_change_runs_it_again(cache, change, monkeypatch):
    store, notebook, module = cache
    extra = "env 1"
    if change == "notebook":
        notebook.write_text('{"a": 1}')
    elif change == "imported file":
        module.write_text("x = 2\n")  # same length, one byte
    elif change == "imported file gone":
        module.unlink()
    elif change == "environment":
        extra = "env 2"
    else:
        monkeypatch.setenv("COURSE_FRESH_RUNS", "1")
    assert store.lookup("nb", [notebook], extra) is None


def test_a_data_file_under_utils_is_part_of_every_fingerprint(cache, monkeypatch, tmp_path):
    store, notebook, module = cache
    data = tmp_path / "table.json"
    data.write_text("[1]")
    monkeypatch.setattr(runs, "data_files", lambda: [data])
    store.store("nb", [notebook], [str(module)], "env 1", {}, "{}")
    assert store.lookup("nb", [notebook], "env 1") is not None
    data.write_text("[2]")
    assert store.lookup("nb", [notebook], "env 1") is None


def test_the_kernel_code_lists_the_utils_files_it_imported():
    code = "import utils.paths, json, torch.nn\n" + runs.IMPORTED_FILES_CODE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=runs.ROOT)
    files = json.loads(done.stdout.strip().splitlines()[-1])
    assert str(runs.ROOT / "utils" / "paths.py") in files
    assert all(f.startswith(str(runs.ROOT / "utils")) for f in files), "only the course's own files"


def test_a_run_stored_by_one_clone_is_found_by_another_clone_of_the_same_code(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_FRESH_RUNS", raising=False)
    clones = [tmp_path / "one", tmp_path / "two"]
    for root in clones:
        (root / "utils").mkdir(parents=True)
        (root / "utils" / "module.py").write_text("x = 1\n")
        (root / "nb.ipynb").write_text("{}")
    monkeypatch.setattr(runs, "ROOT", clones[0])
    runs.RunCache("demo").store("nb", [clones[0] / "nb.ipynb"], [str(clones[0] / "utils" / "module.py")], "env", {}, "{}")
    monkeypatch.setattr(runs, "ROOT", clones[1])
    found = runs.RunCache("demo").lookup("nb", [clones[1] / "nb.ipynb"], "env")
    assert found is not None and found.files == ["utils/module.py"]
    (clones[1] / "utils" / "module.py").write_text("x = 2\n")  # the other clone's code differs: run again
    assert runs.RunCache("demo").lookup("nb", [clones[1] / "nb.ipynb"], "env") is None
