"""Reward fixtures: every task family's data written once per session (read-only for tests)."""

from __future__ import annotations

import pytest
from fixtures_rewards import write_families


@pytest.fixture(scope="session")
def families(tmp_path_factory):
    """Every task family's fixture by name (records, synthetic, crossview, roomplan)."""
    return {family.name: family for family in write_families(tmp_path_factory.mktemp("reward-families"))}
