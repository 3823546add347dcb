# One image for every hpsearch role: the Ray head and workers, the MLflow server and the API. docker-compose.yml
# picks the role with `command:` (a script in /app/scripts/cluster/).
#
# torch is PyPI's default wheel, which on Linux x86_64 is the CUDA build (the CUDA libraries come as wheels,
# so the base image needs none; the host needs the NVIDIA driver and Container Toolkit). For a smaller,
# CPU-only image:
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# (or set TORCH_INDEX_URL in .env).
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The processes run as an unprivileged user. The mount points exist in the image, owned by that user, so a new
# named volume mounted there starts with that ownership.
RUN useradd --create-home --uid 1000 --user-group hpsearch \
 && mkdir -p /shared/hpsearch /shared/data /mlflow-artifacts \
 && chown -R hpsearch:hpsearch /shared /mlflow-artifacts

WORKDIR /app

# torch first, in a layer of its own: the largest download, and the one that changes least.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"

COPY pyproject.toml README.md ./
COPY service/ service/
COPY trainables/ trainables/
# The cluster's stores are PostgreSQL: the `cluster` extra brings its driver.
RUN pip install ".[cluster]"

COPY scripts/ scripts/
COPY search_spaces/ search_spaces/

USER hpsearch
ENV HPSEARCH_HOME=/shared/hpsearch
CMD ["hpsearch", "--help"]
