"""Writes through the gate's handlers that several tests set up alike."""

from __future__ import annotations

from contracts.events import WithdrawalType
from contracts.identity import Principal
from services.publisher.gate import handlers
from services.publisher.gate.domain import Directory
from services.publisher.store import Publisher
from tests.conftest import ADMIN


def withdraw(
    publisher: Publisher,
    directory: Directory,
    publication_id: str,
    withdrawal_type: WithdrawalType,
    explanation: str,
    *,
    principal: Principal = ADMIN,
    expected_version: int | None = None,
) -> handlers.Accepted:
    """A withdrawal without a redirect."""
    return handlers.withdraw(
        publication_id,
        withdrawal_type=withdrawal_type,
        explanation=explanation,
        redirect_to=None,
        expected_version=expected_version,
        principal=principal,
        publisher=publisher,
        directory=directory,
    )
