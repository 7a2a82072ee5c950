"""Bolt: the Popcorn agent on every host, running registered actions over mutual TLS.

Runbooks reach hosts through it: built-in diagnostics (disk usage and health,
processes, ports, services, log tails), a guarded service restart, Python
actions registered with `action`, and version-controlled scripts described by
manifests. Start it with `serve(config)` or `python -m popcorn.remediation.agent
--config FILE.yaml`; call it with `AgentClient`.
"""

from popcorn.remediation.agent.client import AgentClient, RunResult
from popcorn.remediation.agent.config import AgentConfig, load_config
from popcorn.remediation.agent.errors import ActionFailed, AgentError, ConfigError, ManifestError
from popcorn.remediation.agent.registry import ActionArgs, ActionRegistry, action
from popcorn.remediation.agent.runs import ActionContext
from popcorn.remediation.agent.server import BoltAgent, serve

__all__ = [
    "ActionArgs",
    "ActionContext",
    "ActionFailed",
    "ActionRegistry",
    "AgentClient",
    "AgentConfig",
    "AgentError",
    "BoltAgent",
    "ConfigError",
    "ManifestError",
    "RunResult",
    "action",
    "load_config",
    "serve",
]
