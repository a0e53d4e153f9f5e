import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_tiny_pair  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> Path:
    """Target and a perturbed copy as draft: about 60% of greedy drafts accepted."""
    return build_tiny_pair(tmp_path_factory.mktemp("tiny_pair"), draft_noise=0.02, seed=0)


@pytest.fixture(scope="session")
def tiny_pair_far(tmp_path_factory) -> Path:
    """A draft far from its target: most drafted tokens are rejected."""
    return build_tiny_pair(tmp_path_factory.mktemp("tiny_pair_far"), draft_noise=0.3, seed=5)


@pytest.fixture(scope="session")
def default_pair(tmp_path_factory) -> Path:
    """The real default pair (SmolLM2 INT8 and the shipped draft), converted once into a session cache."""
    from edgespec.export.presets import ensure_default_pair

    return ensure_default_pair(tmp_path_factory.mktemp("cache"))
