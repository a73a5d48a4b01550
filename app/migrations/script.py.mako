"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Compatibility: this migration runs in the `release` phase while the previous release is still
serving. It must leave the schema usable by that release: add nullable columns or columns with
server defaults, add tables and indexes; drop or rename only in a later release.
"""
from alembic import op
import sqlalchemy as sa
import app.models
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
