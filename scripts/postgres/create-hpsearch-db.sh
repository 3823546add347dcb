#!/usr/bin/env bash
# Creates hpsearch's database (Optuna storage and the study registry) next to MLflow's. The postgres image
# runs this once, on the first start with an empty data volume, from /docker-entrypoint-initdb.d/.
# The two must be separate databases: MLflow and Optuna each keep their schema version in a table named
# `alembic_version`.
#
# Environment (the postgres service's own):
#   POSTGRES_USER   the role that owns both databases
#   POSTGRES_DB     MLflow's database, which the image has already created
#   HPSEARCH_DB     [hpsearch] the database to create
set -euo pipefail

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set db="${HPSEARCH_DB:-hpsearch}" --set owner="$POSTGRES_USER" <<'SQL'
CREATE DATABASE :"db" OWNER :"owner";
SQL
