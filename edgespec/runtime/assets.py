"""Where the files shipped inside the package live: drafts, the model catalogue, prompt sets, recipes."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CATALOGUE = ASSETS / "catalogue.json"
DRAFTS = ASSETS / "drafts"
PROMPTS = ASSETS / "prompts"
RECIPES = ASSETS / "recipes"
MT_BENCH = PROMPTS / "mt_bench.jsonl"
