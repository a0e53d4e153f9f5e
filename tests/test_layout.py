"""The package layout: the import direction holds (and the check catches a wrong-way import), the wheel carries
the shipped assets, and a non-editable install runs the default pair speculatively."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_imports_point_one_way():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("where, line", [
    ("runtime/model.py", "from edgespec.bench import metrics"),
    ("runtime/pipeline.py", "import torch"),
    ("export/presets.py", "from edgespec.draft import card"),
    ("bench/report.py", "import edgespec.cli"),
])
def test_a_wrong_way_import_is_caught(tmp_path, where, line):
    shutil.copytree(REPO / "edgespec", tmp_path / "edgespec", ignore=shutil.ignore_patterns("assets", "__pycache__"))
    module = tmp_path / "edgespec" / where
    module.write_text(module.read_text() + f"\n{line}  # wrong way\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)], check=True,
                   capture_output=True, timeout=600)
    return next(out.glob("edgespec-*.whl"))


def test_wheel_carries_the_shipped_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ["edgespec/assets/catalogue.json", "edgespec/assets/drafts/smollm2/openvino_model.xml",
                    "edgespec/assets/drafts/smollm2/openvino_model.bin", "edgespec/assets/drafts/smollm2/draft_vocab.npy",
                    "edgespec/assets/drafts/smollm2/edgespec_model.json", "edgespec/assets/prompts/mt_bench.jsonl",
                    "edgespec/assets/recipes/smollm2-draft.sh"]:
        assert shipped in names, shipped
    for prompt_set in (REPO / "edgespec" / "assets" / "prompts").glob("*.jsonl"):
        assert f"edgespec/assets/prompts/{prompt_set.name}" in names


def test_installed_wheel_runs_the_default_pair_speculatively(wheel, default_pair, tmp_path):
    """From a plain (non-editable) install, away from the checkout: the draft comes from the wheel."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    cache = tmp_path / "cache"
    shutil.copytree(default_pair / "target", cache / "pairs" / default_pair.name / "target")  # skip the conversion
    env = {**os.environ, "PYTHONPATH": str(site), "EDGESPEC_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-m", "edgespec", "generate", "Say hello.", "-n", "8", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["mode"] == "speculative" and out["stats"]["new_tokens"] > 0
    draft = cache / "pairs" / default_pair.name / "draft"
    assert draft.is_dir() and not draft.is_symlink()
    assert str(site) in subprocess.run([sys.executable, "-c", "import edgespec; print(edgespec.__file__)"], env=env,
                                       cwd=tmp_path, capture_output=True, text=True).stdout
