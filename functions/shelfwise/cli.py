"""`shelfwise` command line: developer helpers for the local stack."""

from __future__ import annotations

import argparse
import sys

from shelfwise.identity import issue_dev_token
from shelfwise.settings import get_settings

YES = ("1", "true", "yes", "on")
NO = ("0", "false", "no", "off", "")


def yes_or_no(value: str) -> bool:
    """A strict boolean: `make dev-token ADMIN=0` must not mean yes because the string is not empty."""
    word = value.strip().lower()
    if word in YES:
        return True
    if word in NO:
        return False
    raise argparse.ArgumentTypeError(
        f"{value!r} is neither yes ({', '.join(YES)}) nor no ({', '.join(NO[:-1])}, or empty)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shelfwise", description="shelfwise developer commands")
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser(
        "dev-token",
        help="print a bearer token the local app accepts",
        description="Print a token signed with the local key (created in .local/ on first use). "
        "The local app (make run) verifies it; AWS never accepts it.",
    )
    token.add_argument("user", help="user id (letters, digits, _.@+-)")
    token.add_argument(
        "--admin",
        nargs="?",
        const=True,
        default=False,
        type=yes_or_no,
        metavar="YES|NO",
        help="member of the inventory admin group: `--admin` alone or `--admin=1|true|yes`; "
        "`--admin=0|false|no` or `--admin=` is a plain user (the default)",
    )
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds (default 12 h)")
    args = parser.parse_args(argv)

    if args.command == "dev-token":
        try:
            print(issue_dev_token(get_settings(), args.user, admin=args.admin, ttl=args.ttl))
        except ValueError as exc:
            print(f"shelfwise: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
