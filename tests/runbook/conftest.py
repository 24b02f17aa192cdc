"""Fixtures for the runbook language tests."""

from __future__ import annotations

import pytest

from connectors.registry import ConnectorRegistry


@pytest.fixture(scope="session")
def registry() -> ConnectorRegistry:
    """The connectors a runbook may use (built-ins only: tests do not see plugins)."""
    return ConnectorRegistry.discover(include_entry_points=False)
