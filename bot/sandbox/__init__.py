"""Fake vendor APIs on loopback, for ``runbook serve --sandbox``, ``runbook demo`` and tests.

Each fake is a real HTTP server route set that checks credentials and
request shapes the way its vendor does, keeps state (a contained host stays
contained; a Defender machine action goes Pending → InProgress → Succeeded
over polls; an AWX job pending → waiting → running → successful), and can be
told to misbehave: 401 (token expired), 429 with the vendor's retry header,
5xx, a slow answer, an HTML page, malformed JSON.

=================  ===================================  ====================
fake               mounted at (``sandbox.base_url()``)  module
=================  ===================================  ====================
crowdstrike        ``/crowdstrike``                     :mod:`.crowdstrike`
defender           ``/defender`` (+ ``/microsoft-login``
                   for tokens)                          :mod:`.defender`
sentinelone        ``/sentinelone/web/api/v2.1``        :mod:`.sentinelone`
pagerduty          ``/pagerduty``                       :mod:`.pagerduty`
jira               ``/jira``                            :mod:`.jira`
servicenow         ``/servicenow``                      :mod:`.servicenow`
virustotal         ``/virustotal/api/v3``               :mod:`.virustotal`
okta               ``/okta/api/v1``                     :mod:`.okta`
awx                ``/awx``                             :mod:`.awx`
slack (Web API)    ``/slack`` (``/slack/api/<method>``) :mod:`.slack`
echo (``http``)    ``/echo``                            :mod:`.echo`
=================  ===================================  ====================

Usage — synchronous or async, the server always runs on its own thread::

    from bot.sandbox import Sandbox

    with Sandbox() as sandbox:                  # or: async with Sandbox() as sandbox
        sandbox.env        # {"RUNBOOK_CROWDSTRIKE_BASE_URL": "http://127.0.0.1:PORT/crowdstrike",
                           #  "RUNBOOK_CROWDSTRIKE_CLIENT_ID": ..., "..._CLIENT_SECRET": ...,
                           #  "RUNBOOK_SLACK_API_URL": ".../slack/api/", "SLACK_BOT_TOKEN": ...}
        pool = ConnectorPool(registry, env, register_secret=REDACTOR.add,
                             sandbox_env=sandbox.env)   # unconfigured connectors use the fakes
        sandbox.crowdstrike.rate_limit(retry_after=5, times=3)   # the next 3 calls are 429s
        sandbox.defender.next_outcome = "Failed"                  # the next machine actions fail
        sandbox.crowdstrike.host("web-1").status                  # state, for assertions
        sandbox.slack.api_calls("chat.postMessage")               # what was posted
        sandbox.reset()                                           # seeded state, no faults

Faults (every fake): ``inject(kind, times=1, match=None, ...)`` or the
shortcuts ``rate_limit(retry_after=)``, ``server_error(status=)``,
``slow(delay)``, ``html()``, ``malformed_json()``, ``unauthorized()``;
``match`` limits a fault to paths containing it (by default the token
endpoint is spared); ``times=None`` keeps it until ``clear_faults()``.
CrowdStrike and Defender also have ``expire_tokens()`` (every issued token
becomes invalid: the next call is a 401 and the connector fetches a new one)
and ``token_lifetime``.

Over HTTP (for ``runbook demo`` and manual play): ``POST /_control/reset``;
``POST /_control/<fake>/faults`` with ``{"kind": "rate_limit", "times": 3,
"retry_after": 5, "match": "/devices"}``; ``DELETE /_control/<fake>/faults``;
``GET /_control/<fake>/calls`` (secrets masked).

Seeded data: hosts ``web-1``, ``web-2``, ``db-1``, ``laptop-7``, ``ws-042``
(CrowdStrike, also in Defender as ``*.corp.example.com`` and in SentinelOne);
Okta users ``alice@``, ``bob@``, ``carol@example.com``; VirusTotal knows the
EICAR hash, ``evil.example`` and ``203.0.113.66`` as malicious; Jira projects
``SEC``, ``OPS``, ``IT``; AWX templates 7, 8, 9 (a ``limit`` host starting
with ``fail`` makes the job fail). See each module for details.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bot.sandbox.fake import Call, FakeVendor, Fault, FaultKind
from bot.sandbox.server import MOUNTS, LoopbackServer, Sandbox, build_app

__all__ = [
    "MOUNTS",
    "Call",
    "FakeVendor",
    "Fault",
    "FaultKind",
    "LoopbackServer",
    "Sandbox",
    "build_app",
    "sandbox_notice",
]


def sandbox_notice(connectors: Iterable[str], configured: Callable[[str], bool], url: str) -> str:
    """What a sandbox start says: which connectors are fakes, and which are not.

    ``connectors`` are the registry's names; ``configured`` says whether one has
    settings of its own. A connector that has a fake but settings of its own
    keeps them in a sandbox, so its calls reach the real service; the notice
    says so rather than promise otherwise. (``http`` has no fake: it calls the
    URLs the runbooks give, sandbox or not.)
    """
    names = [name for name in connectors if name != "core"]
    faked = [name for name in names if not configured(name)]
    real = [name for name in names if name in MOUNTS and configured(name)]
    text = f"{', '.join(faked) or 'no connectors'} are simulated by fake vendor APIs at {url}"
    if real:
        verb = "has" if len(real) == 1 else "have"
        return (
            f"{text}; {', '.join(real)} {verb} real settings and "
            f"{'is' if len(real) == 1 else 'are'} NOT simulated: those calls reach the real service"
        )
    return f"{text}; nothing real is touched"
