"""Typed client of the skaha session service: ``Session`` (sync) and ``AsyncSession`` (async).

Both execute the same operation plans (``operations``), so they cannot drift apart. Every
failure is a ``controller.errors`` exception carrying the HTTP status and the server's text.
"""

from __future__ import annotations

from controller.client.exchange import RetryPolicy
from controller.client.session import AsyncSession, Session
from controller.client.settings import ClientSettings
from controller.rules import SessionSpec

__all__ = ["AsyncSession", "ClientSettings", "RetryPolicy", "Session", "SessionSpec"]
