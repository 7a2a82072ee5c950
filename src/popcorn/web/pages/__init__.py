"""One module of console pages per domain, loaded only when that domain is installed.

Each module registers its routes on the console blueprint (`popcorn.web.views.bp`) and may
add a panel to the overview (`views.OVERVIEW_PANELS`). Pages read and act only through the
domain's service functions, like the API does.
"""

from __future__ import annotations

import importlib

from popcorn.domains import optional_module

# page module -> the domain service it needs; the order is the overview's panel order
PAGES = {
    "events": "popcorn.events.service",
    "runbooks": "popcorn.remediation.service",
    "certificates": "popcorn.certificates.service",
    "inventory": "popcorn.inventory.service",
    "signals": "popcorn.signals.service",
    "traffic": "popcorn.traffic.service",
    "triage": "popcorn.triage.service",
    "studio": "popcorn.studio.service",
    "ml": "popcorn.ml.service",
    "security": "popcorn.security.service",
    "notebooks": "popcorn.notebooks.service",
    "devicelab": "popcorn.devicelab.service",
}


def load() -> list[str]:
    """Import the page modules whose domain exists; returns their names."""
    loaded = []
    for name, service in PAGES.items():
        if optional_module(service) is None:
            continue
        if optional_module(f"popcorn.web.pages.{name}") is None:
            continue
        importlib.import_module(f"popcorn.web.pages.{name}")
        loaded.append(name)
    return loaded
