# Stand-in for python:3.11-slim, for a machine that cannot reach the public image registry: Debian bookworm's
# own Python 3.11 with pip and venv, `python` and `pip` on PATH as in the real image.
#
# The harness builds it FROM a Debian rootfs it made with debootstrap, and passes:
#   CA_BUNDLE     the host's CA bundle (copied into the context as ca-certificates.crt), which pip trusts here
#   FIND_LINKS    where pip also looks for wheels during builds: the harness serves the host's local wheels
#                 (the CPU build of torch) on 127.0.0.1 while it builds, so they are not baked into the image
ARG BASE
FROM ${BASE}
ARG FIND_LINKS=""
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/python3 /usr/local/bin/python \
 && ln -s /usr/bin/pip3 /usr/local/bin/pip
COPY ca-certificates.crt /etc/ssl/certs/host-ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt \
    PIP_FIND_LINKS=${FIND_LINKS}
LABEL org.hpsearch.standin="python:3.11-slim"
CMD ["python3"]
