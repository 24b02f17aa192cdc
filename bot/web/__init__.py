"""The HTTP surface of ``runbook serve``: health, metrics, Slack, alerts, API."""
