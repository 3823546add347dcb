"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}
    # The pre-Alembic version row follows the revision (see SchemaVersionModel).
    op.execute("UPDATE hpsearch_schema_version SET version = ${int(up_revision)} WHERE id = 1")


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
    op.execute("UPDATE hpsearch_schema_version SET version = ${int(up_revision) - 1} WHERE id = 1")
