"""steerctl: the operator's command line. Each module below registers its commands on
the root group (pyctl/cli/root.py)."""

from __future__ import annotations

from pyctl.cli.root import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
