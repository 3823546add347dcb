# One image for every hpsearch role: the Ray head and workers, the MLflow server and the API. docker-compose.yml
# picks the role with `command:` (a script in /app/scripts/cluster/).
#
# Three stages, so that a change to the code rebuilds in seconds:
#   requirements  the dependency list, read out of pyproject.toml, and constraints.txt's exact versions
#   deps          a virtualenv with torch and every dependency; rebuilt only when that list, the torch
#                 requirement or the base image changes
#   (final)       that virtualenv, then the project itself, installed last with `pip install --no-deps`
#
# torch comes from TORCH_INDEX_URL. docker-compose.yml passes PyTorch's CPU index (the image works on any
# host); docker-compose.gpu.yml passes PyPI, whose Linux x86_64 wheel is the CUDA build (the CUDA libraries
# come as wheels, so the base image needs none; the host needs the NVIDIA driver and Container Toolkit).
# Plain `docker build .` takes the CPU index too. Nothing here needs BuildKit: the classic builder works.

FROM python:3.11-slim AS requirements
COPY pyproject.toml constraints.txt /tmp/
# The project's dependencies, its `cluster` extra (PostgreSQL's driver) and its build backend, one per line.
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb')); \
print('\n'.join(p['build-system']['requires'] + p['project']['dependencies'] \
+ p['project']['optional-dependencies']['cluster']))" > /tmp/requirements.txt


FROM python:3.11-slim AS deps
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, in a layer of its own: the largest download, and the one that changes least.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
COPY --from=requirements /tmp/requirements.txt /tmp/constraints.txt /tmp/
# At the versions constraints.txt names, as `make setup` and CI install them, but for what torch brought
# (a TORCH_SPEC other than the default may need other versions of them), and torch pinned as installed, so
# that nothing swaps it for another build.
RUN python -c "import importlib.metadata as m, re; \
norm = lambda name: re.sub(r'[-_.]+', '-', name).lower(); \
brought = {norm(d.metadata['Name']) for d in m.distributions()} - {'pip', 'setuptools', 'wheel'}; \
pins = [l for l in open('/tmp/constraints.txt').read().splitlines() \
        if l.strip() and not l.startswith('#') and norm(l.split('==')[0].strip()) not in brought]; \
print('\n'.join(pins + ['torch==' + m.version('torch')]))" > /tmp/pins.txt
# The packages' own test suites go (about 250 MB, torch's compiled C++ tests the largest): nothing imports them.
RUN pip install -c /tmp/pins.txt -r /tmp/requirements.txt \
 && find /opt/venv/lib -depth -type d \( -name tests -o -path "*/site-packages/torch/test" \) -exec rm -rf {} +


FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The processes run as an unprivileged user. The mount points exist in the image, owned by that user, so a new
# named volume mounted there starts with that ownership.
RUN useradd --create-home --uid 1000 --user-group hpsearch \
 && mkdir -p /shared/hpsearch /shared/data /mlflow-artifacts \
 && chown -R hpsearch:hpsearch /shared /mlflow-artifacts

COPY --from=deps /opt/venv /opt/venv

WORKDIR /app
# The project last: everything it needs is already installed, so this takes seconds and needs no network.
COPY pyproject.toml README.md ./
COPY service/ service/
COPY trainables/ trainables/
RUN pip install --no-deps --no-build-isolation . \
 && rm -rf build *.egg-info

COPY scripts/ scripts/
COPY search_spaces/ search_spaces/

USER hpsearch
ENV HPSEARCH_HOME=/shared/hpsearch
CMD ["hpsearch", "--help"]
