"""Typed client of the skaha session service: ``Session`` (sync) and ``AsyncSession`` (async).

Both execute the same operation plans (``operations``), so they cannot drift apart. Every
failure is a ``controller.errors`` exception carrying the HTTP status and the server's text.
"""

from __future__ import annotations

from controller.client.exchange import RetryPolicy
from controller.client.operations import CREATE_KINDS
from controller.client.session import AsyncSession, Session
from controller.client.settings import ClientSettings

__all__ = ["CREATE_KINDS", "AsyncSession", "ClientSettings", "RetryPolicy", "Session"]
