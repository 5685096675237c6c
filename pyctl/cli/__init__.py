"""steerctl: the operator's command line. Each module below registers its commands on
the root group (pyctl/cli/root.py)."""

from __future__ import annotations

# each import registers its commands on the root group
import pyctl.cli.daemon
import pyctl.cli.explain
import pyctl.cli.fleet
import pyctl.cli.icetcp
import pyctl.cli.keys
import pyctl.cli.lab
import pyctl.cli.listings
import pyctl.cli.routes  # noqa: F401
from pyctl.cli.root import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
