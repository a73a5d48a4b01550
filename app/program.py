"""A shop's loyalty program as one validated document, versioned per shop (no Flask here).

Every change creates a new `ProgramVersion`; the newest is in force and older ones stay, so each
ledger entry can name the version and rule that produced it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ProgramVersion, Shop


class ProgramError(ValueError):
    """The document is invalid; the message names each bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Earning(_Strict):
    """How orders earn points."""

    # Points per 1 unit of the shop currency, rounded down per order.
    points_per_unit: Decimal = Field(default=Decimal("1"), ge=0, le=1000)
    # Prices that include tax earn on the gross amount only when this is on.
    earn_on_gross: bool = False
    # Days points stay pending after payment (the return window); 0 = available at once.
    return_window_days: int = Field(default=14, ge=0, le=365)
    # Orders carrying any of these tags earn nothing (staff orders).
    excluded_order_tags: tuple[str, ...] = ("staff",)


class Program(_Strict):
    """The whole program of a shop."""

    earning: Earning = Earning()


def validate_document(document: Any) -> Program:
    """Validate a program document.

    Raises:
        ProgramError: naming every bad field ("earning.points_per_unit: ...").
    """
    try:
        return Program.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}" for err in exc.errors()
        ]
        raise ProgramError("; ".join(problems)) from None


def current_program(session: Session, shop: Shop) -> tuple[int, Program]:
    """Return the version number and program in force for `shop` (the default when none saved)."""
    row = session.scalars(
        select(ProgramVersion)
        .where(ProgramVersion.shop_id == shop.id)
        .order_by(ProgramVersion.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, Program()
    return row.version, validate_document(row.document)


def save_program(session: Session, shop: Shop, document: Any, *, created_by: str) -> ProgramVersion:
    """Validate `document` and store it as the shop's next version (nothing stored on error).

    Raises:
        ProgramError: the document is invalid.
    """
    program = validate_document(document)
    version, _ = current_program(session, shop)
    row = ProgramVersion(
        shop_id=shop.id,
        version=version + 1,
        document=program.model_dump(mode="json"),
        created_by=created_by,
    )
    session.add(row)
    shop.program_version = row.version
    session.flush()
    return row
