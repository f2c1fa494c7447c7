"""Placeholder: the `simulator` subcommands are being written."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    subparsers.add_parser("simulator", help="(not yet available)")
