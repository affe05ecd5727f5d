# syntax=docker/dockerfile:1
# Control image: the control server's nodes (ws_agent operator console, jobs service, fleet nats_bridge)
# with ROS 2 Jazzy from the PyPI wheels on Debian 12 "bookworm" (Python 3.11), exactly as on a pip-only
# machine. The NATS hub is not started by default: it is its own service from the official nats image
# (docker/compose.yaml, Helm chart). Build from the repository root:
#
#   docker build -f docker/control.Dockerfile -t robot-platform/control:0.1.0 .
#
# The base is a build argument: pin it by digest for a site release (unknown offline, hence not here),
# or give a local Debian 12 image (scripts/build_images.sh does: --build-arg BASE_IMAGE=localhost/...):
#   docker buildx imagetools inspect debian:bookworm-slim               # -> Digest: sha256:...
#   docker build -f docker/control.Dockerfile \
#     --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest> -t robot-platform/control:0.1.0 .
#
# No secret is part of the image: passwords, keys and certificates are mounted at run time.
ARG BASE_IMAGE=debian:bookworm-slim

# ---- build: compilers for the interface package, pinned wheels, colcon build ------------------------
# This stage is the same text in robot.Dockerfile and control.Dockerfile, so a build of both images
# builds it once (the second build takes every layer from the cache).
FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Versions come from the Debian release of the pinned base image (requirements/apt.txt lists them).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake python3-dev python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/robot_platform
# ROS 2 Jazzy wheels + the platform's Python packages, pinned by requirements/constraints.txt; the
# development/test section (pytest, ruff, linters) stays out of the image.
COPY requirements/ requirements/
COPY scripts/fix_ros_wheel_paths.py scripts/fix_ros_wheel_paths.py
# A site whose PyPI mirror or TLS proxy has its own CA gives it as the build secret pip_ca (mounted for
# this step only, never in a layer): `--secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt`.
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /opt/venv \
 && sed -e '/^# development and tests/,$d' requirements/python.txt > /tmp/runtime.txt \
 && grep -q '^nats-py' /tmp/runtime.txt \
 && /opt/venv/bin/pip install -c requirements/constraints.txt -r requirements/ros.txt -r /tmp/runtime.txt \
 && /opt/venv/bin/python scripts/fix_ros_wheel_paths.py /opt/venv
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv AMENT_PREFIX_PATH=/opt/venv CMAKE_PREFIX_PATH=/opt/venv
COPY src/ src/
COPY launch/ launch/
COPY config/ config/
COPY web/ web/
# The Mosquitto plugin is built into its own image (docker/mosquitto.Dockerfile).
RUN colcon build --base-paths src --event-handlers console_cohesion- summary+ \
      --packages-skip robot_platform_mosquitto_auth \
      --cmake-args -DPython3_EXECUTABLE=/opt/venv/bin/python -DBUILD_TESTING=OFF \
 && rm -rf build log

# ---- runtime: Debian's python3, the venv and the install tree, non-root ----------------------------
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The venv's python is a link to the base's /usr/bin/python3 (same Debian release as the build stage).
# The ROS wheels carry their own libraries (auditwheel), so python3 is the only runtime package.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 control \
 && useradd --system --uid 10001 --gid control --create-home --home-dir /home/control control
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/robot_platform/install /opt/robot_platform/install
COPY docker/entrypoint.sh /usr/local/bin/robot-platform-entrypoint
COPY docker/healthcheck.py /usr/local/bin/robot-platform-healthcheck
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv RP_WORKSPACE=/opt/robot_platform \
    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST RMW_IMPLEMENTATION=rmw_fastrtps_cpp ROS_LOG_DIR=/tmp/ros_log \
    RP_HEALTH_URLS=http://127.0.0.1:8080/healthz
USER 10001:10001
WORKDIR /home/control
# Each service sets RP_HEALTH_URLS / RP_HEALTH_PROCS to what "healthy" means for it (see compose.yaml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "/usr/local/bin/robot-platform-healthcheck"]
ENTRYPOINT ["/usr/local/bin/robot-platform-entrypoint"]
# The hub runs separately: start only the control nodes.
CMD ["robot-platform", "control", "--start-nats", "false"]
