# canfar-controller container image.
#
#   docker build -t canfar-controller .
#   docker run --rm --read-only -v "$PWD/sessionsets:/etc/canfar-controller/sessionsets:ro" \
#     -p 8080:8080 canfar-controller run --simulator
#
# Two stages: the first builds the package into a virtual environment, the second copies only that
# environment onto a clean base, so no pip, build backend, cache or source tree reaches the final image.
# The root filesystem can be read-only: the state directory is mounted (read-only is fine) and the
# status file lives in the /var/lib/canfar-controller volume.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/canfar-controller
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
# A regular (not editable) install: the venv must not point back at /src. pip byte-compiles the
# package at install time, which matters because the final root filesystem is read-only.
RUN /opt/canfar-controller/bin/pip install --no-cache-dir . \
 && /opt/canfar-controller/bin/pip uninstall --yes pip setuptools \
 && /opt/canfar-controller/bin/canfar-controller --version

FROM ${BASE_IMAGE}
ARG UID=10001
LABEL org.opencontainers.image.title="canfar-controller" \
      org.opencontainers.image.description="Keeps SessionSets of CANFAR Science Platform sessions alive" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid "${UID}" canfar-controller \
 && useradd --system --uid "${UID}" --gid canfar-controller --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin canfar-controller \
 && mkdir -p /etc/canfar-controller/sessionsets /var/lib/canfar-controller \
 && chown canfar-controller:canfar-controller /var/lib/canfar-controller
COPY --from=build /opt/canfar-controller /opt/canfar-controller
ENV PATH=/opt/canfar-controller/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CANFAR_CONTROLLER_STATE=/etc/canfar-controller/sessionsets \
    CANFAR_CONTROLLER_STATUS_FILE=/var/lib/canfar-controller/status.json \
    CANFAR_CONTROLLER_METRICS_HOST=0.0.0.0 \
    CANFAR_CONTROLLER_METRICS_PORT=8080
VOLUME ["/var/lib/canfar-controller"]
EXPOSE 8080
USER ${UID}:${UID}
ENTRYPOINT ["canfar-controller"]
CMD ["run"]
