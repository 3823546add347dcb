"""Schema 3: the status checked by the database, objectives as JSON lists, and a study's liveness and outcome.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

- `status` keeps its words in VARCHAR(16), now checked (ck_hpsearch_studies_status) against the words
  StudyStatus has at this revision; a study with any other word stops the upgrade, which then changes nothing;
- `metrics`, `modes`: JSON lists, replacing the JSON text in `metric`, `mode`;
- `space_overrides`: never NULL any more ([] where it was);
- new: `best_trial`, `pareto_front`, `heartbeat_at`, and `retries` (0 for the studies already there). A
  database made by hpsearch's schema version 3 (before Alembic, stamped 0002) has the first three already:
  their values are kept;
- `hpsearch_schema_version` holds 99 from now on: any hpsearch from before Alembic (versions 1 to 3) then
  refuses this database with "upgrade hpsearch".
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# StudyStatus's words at this revision; the check constraint is made from them (a later status: a new revision).
_STATUSES = ("queued", "running", "succeeded", "failed", "stopped", "crashed")
_CHECK = "ck_hpsearch_studies_status"


def _new_columns() -> list:
    """The columns this revision adds (made anew for each use: a Column belongs to one table)."""
    return [
        sa.Column("metrics", sa.JSON(), nullable=True),  # filled from `metric`, then made NOT NULL
        sa.Column("modes", sa.JSON(), nullable=True),  # filled from `mode`, then made NOT NULL
        sa.Column("best_trial", sa.Integer(), nullable=True),
        sa.Column("pareto_front", sa.JSON(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False, server_default=sa.text("0")),
    ]


_studies = sa.table(
    "hpsearch_studies",
    sa.column("id", sa.String),
    sa.column("status", sa.String),
    sa.column("metric", sa.String),
    sa.column("mode", sa.String),
    sa.column("metrics", sa.JSON),
    sa.column("modes", sa.JSON),
    sa.column("space_overrides", sa.JSON),
)


def upgrade() -> None:
    bind = op.get_bind()
    unknown = bind.execute(sa.select(_studies.c.id, _studies.c.status).where(_studies.c.status.not_in(_STATUSES))).all()
    if unknown:
        studies = ", ".join(f"{id_} ({status!r})" for id_, status in unknown)
        raise RuntimeError(f"studies with a status hpsearch does not know: {studies}; set each to one of "
                           f"{', '.join(_STATUSES)}")
    existing = {c["name"] for c in sa.inspect(bind).get_columns("hpsearch_studies")}
    with op.batch_alter_table("hpsearch_studies") as batch:
        for column in _new_columns():
            if column.name not in existing:
                batch.add_column(column)
    rows = bind.execute(sa.select(_studies.c.id, _studies.c.metric, _studies.c.mode, _studies.c.space_overrides)).all()
    for id_, metric, mode, overrides in rows:
        bind.execute(_studies.update().where(_studies.c.id == id_).values(
            metrics=_as_list(metric), modes=_as_list(mode), space_overrides=overrides or []))
    with op.batch_alter_table("hpsearch_studies") as batch:
        batch.alter_column("metrics", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("modes", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("space_overrides", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("metric")
        batch.drop_column("mode")
        batch.create_check_constraint(op.f(_CHECK), "status IN (%s)" % ", ".join(f"'{s}'" for s in _STATUSES))
    op.execute("UPDATE hpsearch_schema_version SET version = 99 WHERE id = 1")


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("hpsearch_studies") as batch:
        batch.drop_constraint(op.f(_CHECK), type_="check")
        batch.add_column(sa.Column("metric", sa.String(256), nullable=True))
        batch.add_column(sa.Column("mode", sa.String(64), nullable=True))
        batch.alter_column("space_overrides", existing_type=sa.JSON(), nullable=True)
    for id_, metrics, modes in bind.execute(sa.select(_studies.c.id, _studies.c.metrics, _studies.c.modes)).all():
        bind.execute(_studies.update().where(_studies.c.id == id_).values(
            metric=json.dumps(metrics), mode=json.dumps(modes)))
    with op.batch_alter_table("hpsearch_studies") as batch:
        batch.alter_column("metric", existing_type=sa.String(256), nullable=False)
        batch.alter_column("mode", existing_type=sa.String(64), nullable=False)
        for column in reversed(_new_columns()):
            batch.drop_column(column.name)
    op.execute("UPDATE hpsearch_schema_version SET version = 2 WHERE id = 1")


def _as_list(text: str) -> list:
    """Schemas 1 and 2 kept a JSON list in the text (`["val_acc"]`)."""
    value = json.loads(text)
    return value if isinstance(value, list) else [value]
