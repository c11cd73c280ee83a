# syntax=docker/dockerfile:1
# The Nightshift operator image: `docker build -t localhost/nightshift/operator:dev .`, or
# `make images` (buildah, with PYTHON_IMAGE=localhost/nightshift/python-base:3.11-bookworm).
#
# Two stages: the builder turns the project and its pinned dependencies into wheels; the final
# stage installs only those wheels into a virtual environment, so no compiler, pip cache or
# source tree ends up in the image.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
# constraints.txt pins every dependency (and the dev tools, which `pip wheel .` does not pull in).
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt .

FROM ${PYTHON_IMAGE}
# Time zones come from the pinned Python `tzdata` package (a dependency of nightshift, installed
# from the wheels above), never from the base image's /usr/share/zoneinfo: the schedule engine
# only reads tzdata, so the zone rules change exactly when constraints.txt does.
ENV PATH=/opt/nightshift/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/nightshift \
    && /opt/nightshift/bin/pip install --no-index --find-links /wheels nightshift \
    && /opt/nightshift/bin/pip uninstall --yes pip setuptools \
    && groupadd --system --gid 10001 nightshift \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin nightshift
USER 10001:10001
# health (/healthz), metrics, admission webhook
EXPOSE 8080 9090 9443
ENTRYPOINT ["nightshift"]
CMD ["run"]
