"""Connectors: named groups of actions that reach the outside world.

Built-in connectors are listed in :data:`BUILTIN`; others are found through
the entry point group ``runbook_bot.connectors`` (see ``docs/connectors.md``).
"""

from __future__ import annotations

BUILTIN: dict[str, str] = {
    "core": "connectors.core:Core",
    "http": "connectors.http:HTTP",
    "crowdstrike": "connectors.crowdstrike:CrowdStrike",
    "defender": "connectors.defender:Defender",
    "sentinelone": "connectors.sentinelone:SentinelOne",
    "pagerduty": "connectors.pagerduty:PagerDuty",
    "jira": "connectors.jira:Jira",
    "servicenow": "connectors.servicenow:ServiceNow",
    "virustotal": "connectors.virustotal:VirusTotal",
    "okta": "connectors.okta:Okta",
    "awx": "connectors.awx:AWX",
    "slack": "connectors.slack:Slack",
}
