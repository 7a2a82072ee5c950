"""`python -m popcorn.remediation.agent --config FILE.yaml`: run the Bolt agent on this host."""

from __future__ import annotations

import argparse
import logging
import sys

from popcorn.remediation.agent.config import load_config
from popcorn.remediation.agent.errors import ConfigError
from popcorn.remediation.agent.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m popcorn.remediation.agent",
        description="Popcorn Bolt agent: registered diagnostic and remediation actions over mTLS.",
    )
    parser.add_argument("--config", required=True, help="agent config file (YAML)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        serve(load_config(options.config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
