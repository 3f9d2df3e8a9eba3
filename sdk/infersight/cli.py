"""The ``infersight`` command: ``infersight top``, the live latency/RPS/errors/SLO/alerts view,
and ``infersight trace``, one trace from the trace backend as a waterfall."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _trace_arguments(parser: argparse.ArgumentParser) -> None:
    from .traceview import DEFAULT_JAEGER_URL

    parser.add_argument("trace_id", nargs="?", help="32 hex digits; default: the slowest recent exemplar's trace")
    parser.add_argument("--jaeger", default=DEFAULT_JAEGER_URL, help=f"Jaeger query URL (default {DEFAULT_JAEGER_URL})")
    parser.add_argument("--prometheus", help="Prometheus base URL, to find the slowest recent exemplar")
    parser.add_argument("--window", type=float, default=300, help="seconds of exemplars to look at (default 300)")
    parser.add_argument("--width", type=int, default=120, help="line width (default 120)")
    parser.add_argument("--no-color", action="store_true")


def _trace(args: argparse.Namespace) -> int:
    from . import traceview

    color = sys.stdout.isatty() and not args.no_color
    try:
        if args.trace_id:
            trace = traceview.fetch_trace(args.jaeger, args.trace_id)
            title = "trace"
        else:
            found = traceview.slowest_stored_trace(args.prometheus, args.jaeger, window_s=args.window)
            if found is None:
                print(f"no exemplar of the last {args.window:g} s has its trace in {args.jaeger}", file=sys.stderr)
                return 1
            exemplar, trace = found
            title = f"slowest recent request ({exemplar.value * 1000:.0f} ms)"
    except traceview.TraceNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"trace backend or Prometheus unreachable: {exc}", file=sys.stderr)
        return 1
    print(traceview.render_waterfall(trace, width=args.width, color=color, title=title))
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import __version__, top

    parser = argparse.ArgumentParser(prog="infersight", description="Observability for ML inference servers.")
    parser.add_argument("--version", action="version", version=f"infersight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    top.add_arguments(sub.add_parser("top", help="live latency/RPS/errors/SLO/alerts table"))
    _trace_arguments(sub.add_parser("trace", help="one trace from Jaeger as a waterfall (default: the slowest)"))
    args = parser.parse_args(argv)
    if args.command == "trace":
        if not args.trace_id and not args.prometheus:
            parser.error("trace: give a trace id, or --prometheus URL to find the slowest recent one")
        return _trace(args)
    if args.prometheus is None and args.metrics_url is None:
        parser.error("top: give --prometheus URL or --metrics-url URL")
    return top.run(args)


if __name__ == "__main__":
    sys.exit(main())
