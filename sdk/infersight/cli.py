"""The ``infersight`` command: ``infersight top``, the live latency/RPS/errors/SLO/alerts view."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from . import __version__, top

    parser = argparse.ArgumentParser(prog="infersight", description="Observability for ML inference servers.")
    parser.add_argument("--version", action="version", version=f"infersight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    top.add_arguments(sub.add_parser("top", help="live latency/RPS/errors/SLO/alerts table"))
    args = parser.parse_args(argv)
    if args.prometheus is None and args.metrics_url is None:
        parser.error("top: give --prometheus URL or --metrics-url URL")
    return top.run(args)


if __name__ == "__main__":
    sys.exit(main())
