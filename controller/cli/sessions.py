"""Placeholder: the `sessions` subcommands are being written."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    subparsers.add_parser("sessions", help="(not yet available)")
