"""Runbook Bot: ChatOps / SOAR runbook automation."""

__version__ = "0.1.0"
