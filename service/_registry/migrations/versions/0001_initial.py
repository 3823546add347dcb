"""The first schema (version 1): one row per study, and the version row.

Revision ID: 0001
Revises:
Create Date: 2026-11-30

Exactly the tables hpsearch's schema version 1 made with `create_all`, so that a database made then and one
made by this revision are the same.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hpsearch_schema_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.execute("INSERT INTO hpsearch_schema_version (id, version) VALUES (1, 1)")
    op.create_table(
        "hpsearch_studies",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("space_text", sa.Text(), nullable=False),
        sa.Column("space_source", sa.Text(), nullable=True),
        sa.Column("space_overrides", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metric", sa.String(256), nullable=False),
        sa.Column("mode", sa.String(64), nullable=False),
        sa.Column("optuna_storage", sa.Text(), nullable=False),
        sa.Column("optuna_study_name", sa.String(256), nullable=False),
        sa.Column("mlflow_tracking_uri", sa.Text(), nullable=False),
        sa.Column("mlflow_experiment_id", sa.String(64), nullable=True),
        sa.Column("mlflow_parent_run_id", sa.String(64), nullable=True),
        sa.Column("tune_path", sa.Text(), nullable=True),
        sa.Column("ray_job_id", sa.String(128), nullable=True),
        sa.Column("driver", sa.String(256), nullable=True),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("n_running", sa.Integer(), nullable=False),
        sa.Column("n_completed", sa.Integer(), nullable=False),
        sa.Column("n_pruned", sa.Integer(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.Column("best_params", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_hpsearch_studies_name", "hpsearch_studies", ["name"])
    op.create_index("ix_hpsearch_studies_status", "hpsearch_studies", ["status"])


def downgrade() -> None:
    op.drop_index("ix_hpsearch_studies_status", table_name="hpsearch_studies")
    op.drop_index("ix_hpsearch_studies_name", table_name="hpsearch_studies")
    op.drop_table("hpsearch_studies")
    op.drop_table("hpsearch_schema_version")
