"""The `bridge` command (also `python -m bridges`).

`bridge cgi ...` is routed before anything else is imported: a CGI process pays for every import
on every request. Everything else goes to `bridges.cli` (argparse, Config, the server).
Note: `bridge` is also iproute2's network tool (in /sbin on most Linux machines); call this one as
`.venv/bin/bridge` or `python -m bridges`.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["cgi"]:
        from .cgi_host import cgi_main

        return cgi_main(args[1:])
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
