#!/usr/bin/env bash
# What the Ray role scripts (ray-head, ray-worker) share, sourced by both: the cluster's token, no usage
# records, the object store's size, and how `ray start` is run. Each function names its caller (`role`) in
# what it says; each refusal exits 2 with one line saying what to set.

# Token authentication only: RAY_AUTH_MODE token (its default here) and a token Ray can read.
ray_node_require_token() {
  local role=$1
  export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
  if [[ "$RAY_AUTH_MODE" != token ]]; then
    echo "$role: RAY_AUTH_MODE is '$RAY_AUTH_MODE', but this cluster runs with token authentication only;" \
         "unset it or set it to 'token'" >&2
    exit 2
  fi
  if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -r "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
    echo "$role: no cluster token: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a readable file" >&2
    exit 2
  fi
  # No usage records to MLflow's or Ray's makers from this node's processes (Ray's own, study drivers, trial
  # workers), unless the operator sets them (service/_telemetry.py). `--disable-usage-stats`, which the role
  # scripts pass, says the same to `ray start`, which passes it on only from a head node.
  export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"
  export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
}

# Appends the node's address, object store (bytes, or N% of /dev/shm, where Ray keeps it: a store larger than
# /dev/shm goes to /tmp) and temp dir to the caller's `args`.
ray_node_common_args() {
  local role=$1 object_store="${HPSEARCH_RAY_OBJECT_STORE_MEMORY:-}"
  [[ -n "${HPSEARCH_RAY_NODE_IP:-}" ]] && args+=(--node-ip-address "$HPSEARCH_RAY_NODE_IP")
  if [[ "$object_store" =~ ^([0-9]+)%$ ]] && (( 10#${BASH_REMATCH[1]} >= 1 && 10#${BASH_REMATCH[1]} <= 100 )); then
    object_store=$(( $(stat -f -c '%b * %S' /dev/shm) * 10#${BASH_REMATCH[1]} / 100 ))
  elif [[ -n "$object_store" && ! "$object_store" =~ ^[0-9]+$ ]]; then
    echo "$role: HPSEARCH_RAY_OBJECT_STORE_MEMORY is '$object_store', but must be bytes (e.g. 2000000000)" \
         "or a share of /dev/shm from 1% to 100% (e.g. 90%)" >&2
    exit 2
  fi
  [[ -n "$object_store" ]] && args+=(--object-store-memory "$object_store")
  [[ -n "${HPSEARCH_RAY_TEMP_DIR:-}" ]] && args+=(--temp-dir "$HPSEARCH_RAY_TEMP_DIR")
  return 0
}

# Replaces the shell with `ray start "${args[@]}" "$@"`; for a node on 127.0.0.1, with ray-start-loopback.
ray_node_start() {
  local role=$1 ray_bin python shebang
  shift
  shopt -s nocasematch
  case "${HPSEARCH_RAY_NODE_IP:-}" in
    127.0.0.1)
      # Every node on this machine (scripts/local-cluster): the node and all it starts listen on loopback only,
      # through Ray's own `ray start`, run by the interpreter Ray is installed in.
      if ! ray_bin="$(command -v ray)"; then
        echo "$role: no \`ray\` on PATH; install ray[default] in this environment" >&2
        exit 2
      fi
      python="$(dirname "$(readlink -f "$ray_bin")")/python"
      if [[ ! -x "$python" ]]; then  # e.g. pip install --user: the interpreter is on ray's first line
        read -r shebang <"$ray_bin" || true
        python="${shebang#\#!}"
      fi
      if [[ ! -x "$python" || "$(basename "$python")" != python* ]]; then
        echo "$role: cannot tell which Python runs $ray_bin (tried '$python'); run it from the virtualenv Ray" \
             "is installed in" >&2
        exit 2
      fi
      exec "$python" "$(dirname "${BASH_SOURCE[0]}")/ray-start-loopback" "${args[@]}" "$@" ;;
    localhost | ::1 | 0:0:0:0:0:0:0:1 | ::ffff:127.* | 127.*)
      echo "$role: HPSEARCH_RAY_NODE_IP is '$HPSEARCH_RAY_NODE_IP'; for a node on loopback use 127.0.0.1" \
           "(Ray would replace any other loopback address by the machine's)" >&2
      exit 2 ;;
  esac
  shopt -u nocasematch
  exec ray start "${args[@]}" "$@"
}
