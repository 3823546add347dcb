"""Schema version 2: what a driver started later by the API needs to know, and the stop switch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Columns already there are skipped: the migration that preceded this revision could be interrupted between
its ALTERs and its version bump on SQLite. A database made by the very first schema 1, before
`space_overrides` existed, gets that column too.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_NEW_COLUMNS = [
    sa.Column("warm_start_from", sa.String(128), nullable=True),  # study id whose trials seed this one
    sa.Column("register_model", sa.String(256), nullable=True),  # Model Registry name for the best model
    sa.Column("registered_model", sa.String(300), nullable=True),  # "name/version" once registered
    sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True),  # set by `hpsearch stop`
]


def upgrade() -> None:
    existing = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("hpsearch_studies")}
    for column in [sa.Column("space_overrides", sa.JSON(), nullable=True), *_NEW_COLUMNS]:
        if column.name not in existing:
            op.add_column("hpsearch_studies", column)
    op.execute("UPDATE hpsearch_schema_version SET version = 2 WHERE id = 1")


def downgrade() -> None:
    with op.batch_alter_table("hpsearch_studies") as batch:
        for column in reversed(_NEW_COLUMNS):
            batch.drop_column(column.name)
    op.execute("UPDATE hpsearch_schema_version SET version = 1 WHERE id = 1")
