# syntax=docker/dockerfile:1
# The Nightshift operator image: `docker build -t localhost/nightshift/operator:dev .`, or
# `make images` (buildah, with PYTHON_IMAGE=localhost/nightshift/python-base:3.11-bookworm).
#
# Two stages. The builder installs the pinned dependencies into a virtual environment, every
# download checked against its hash (requirements/runtime.txt, `make requirements`), builds the
# project's own wheel with the hashed build tools (requirements/build.txt) in a virtual
# environment of their own, and gathers the final root file system: the environment, the Python it
# runs on and the shared libraries they load (hack/images/operator/rootfs.py), with an SBOM
# (hack/images/operator/sbom.py). The final stage is that directory on `scratch`: no shell, no
# package manager, no pip, no compiler, no source tree.

# The base image by digest: a tag moves, a digest names the same bytes on every build. Any
# Debian-based Python 3.11 image works (the builder needs python3 -m venv, ldd, ldconfig and dpkg's
# database); refresh with `docker buildx imagetools inspect python:3.11-slim-bookworm`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY requirements/runtime.txt requirements/build.txt requirements/
# The build tools in /build (never in the image); the operator's environment without pip of its
# own: /build's pip installs into it (--python).
RUN python3 -m venv /build \
    && /build/bin/pip install --require-hashes --requirement requirements/build.txt \
    && python3 -m venv --without-pip /opt/nightshift \
    && /build/bin/pip --python /opt/nightshift/bin/python install --require-hashes \
         --requirement requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY hack/images/operator/ hack/images/operator/
# Time zones come from the pinned Python `tzdata` package (a dependency of nightshift, in
# runtime.txt), never from the base image's /usr/share/zoneinfo (which the final image lacks).
RUN /build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /build/bin/pip --python /opt/nightshift/bin/python install --no-deps /wheels/nightshift-*.whl \
    && python3 hack/images/operator/rootfs.py /opt/nightshift /rootfs \
    && python3 hack/images/operator/sbom.py /rootfs /opt/nightshift \
         /usr/share/doc/nightshift/sbom.cdx.json

FROM scratch
ARG PYTHON_IMAGE
COPY --from=builder /rootfs /
LABEL org.opencontainers.image.title="nightshift-operator" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      dev.nightshift.sbom="/usr/share/doc/nightshift/sbom.cdx.json"
ENV PATH=/opt/nightshift/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
# health (/healthz), metrics, admission webhook
EXPOSE 8080 9090 9443
ENTRYPOINT ["nightshift"]
CMD ["run"]
