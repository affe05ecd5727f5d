# syntax=docker/dockerfile:1
# Robot image: the ROS 2 Jazzy stack of one robot (nodes + optionally its own nats-server leaf), with ROS 2
# from the PyPI wheels on Debian 12 "bookworm" (Python 3.11), exactly as on a pip-only machine: the
# same recipe as the control image, so the image `make images` builds and smoke-starts on a machine
# without any container registry (from a local mmdebstrap base) is the one a site builds. Build from
# the repository root:
#
#   docker build -f docker/robot.Dockerfile -t robot-platform/robot:0.1.0 .
#
# The base is a build argument: pin it by digest for a site release (unknown offline, hence not here),
# or give a local Debian 12 image (scripts/build_images.sh does: --build-arg BASE_IMAGE=localhost/...):
#
#   docker buildx imagetools inspect debian:bookworm-slim               # -> Digest: sha256:...
#   docker build -f docker/robot.Dockerfile \
#     --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest> -t robot-platform/robot:0.1.0 .
#
# No secret is part of the image: certificates and keys are mounted at run time (compose secrets,
# Kubernetes secrets or /etc/robot-platform on a robot).
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
RUN groupadd --system --gid 10001 robot \
 && useradd --system --uid 10001 --gid robot --create-home --home-dir /home/robot robot
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/robot_platform/install /opt/robot_platform/install
COPY docker/entrypoint.sh /usr/local/bin/robot-platform-entrypoint
COPY docker/healthcheck.py /usr/local/bin/robot-platform-healthcheck
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv RP_WORKSPACE=/opt/robot_platform \
    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST RMW_IMPLEMENTATION=rmw_fastrtps_cpp \
    ROS_LOG_DIR=/tmp/ros_log RP_HEALTH_URLS=http://127.0.0.1:8222/healthz RP_HEALTH_PROCS=robot_sim
USER 10001:10001
WORKDIR /home/robot
# Healthy = the robot's nats-server (in this container or a sidecar sharing its network) answers and
# the configured node processes are running.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "/usr/local/bin/robot-platform-healthcheck"]
ENTRYPOINT ["/usr/local/bin/robot-platform-entrypoint"]
# Robot id, hub leaf URL and the rest are options or environment; see README "Robots in the field".
CMD ["robot-platform", "robot", "--robot-id", "r1", "--nats-store-dir", "/home/robot/nats"]
