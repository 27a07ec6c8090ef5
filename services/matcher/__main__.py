"""python -m services.matcher serve | replay [FILE] | verify [--partition P] [--from A] [--to B]

The matcher's command line: the Kafka service, the offline replay, the determinism audit.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.matcher")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the matcher on match.commands (settings from the env)")
    replay = sub.add_parser("replay", help="run the pure core over JSON lines (stdin without FILE)")
    replay.add_argument("file", nargs="?", help="JSON lines of commands; '-' or none: stdin")
    verify = sub.add_parser("verify", help="re-run logged input, compare with logged output")
    verify.add_argument("--partition", type=int, help="input partition (default: all)")
    verify.add_argument("--from", dest="start", type=int, default=0, help="first input offset")
    verify.add_argument("--to", dest="end", type=int, help="input offset to stop before")
    args = parser.parse_args(argv)
    if args.command == "replay":
        from .replay import main as replay_main

        return replay_main(args.file)
    if args.command == "serve":
        from .service import serve

        return serve()
    from .verify import main as verify_main

    return verify_main(args.partition, args.start, args.end)


if __name__ == "__main__":
    sys.exit(main())
