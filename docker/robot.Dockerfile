# syntax=docker/dockerfile:1
# Robot image: the ROS 2 Jazzy stack of one robot (nodes + optionally its own nats-server leaf), on the
# official ROS image (Ubuntu 24.04 "noble"). Build from the repository root:
#
#   docker build -f docker/robot.Dockerfile -t robot-platform/robot:0.1.0 .
#
# Base images are pinned by tag here; pin them by digest as well for a site release (the digest cannot be
# known offline, so it is a build argument rather than a made-up value in this file):
#
#   docker buildx imagetools inspect ros:jazzy-ros-base-noble   # -> Digest: sha256:...
#   docker build -f docker/robot.Dockerfile \
#     --build-arg ROS_BUILD_IMAGE=ros:jazzy-ros-base-noble@sha256:<digest> \
#     --build-arg ROS_RUNTIME_IMAGE=ros:jazzy-ros-core-noble@sha256:<digest> -t robot-platform/robot:0.1.0 .
#
# No secret is part of the image: certificates and keys are mounted at run time (compose secrets,
# Kubernetes secrets or /etc/robot-platform on a robot).
ARG ROS_BUILD_IMAGE=ros:jazzy-ros-base-noble
ARG ROS_RUNTIME_IMAGE=ros:jazzy-ros-core-noble

# ---- build: system deps by rosdep, Python deps by pip (pinned), colcon build ------------------------
FROM ${ROS_BUILD_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/robot_platform
# package.xml first: the rosdep layer is rebuilt only when dependencies change.
COPY src/robot_platform_interfaces/package.xml src/robot_platform_interfaces/package.xml
COPY src/robot_platform/package.xml src/robot_platform/package.xml
# Versions of apt packages come from the ROS snapshot the pinned base image was built against.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rosdep update --rosdistro "$ROS_DISTRO" \
 && rosdep install --from-paths src --ignore-src --rosdistro "$ROS_DISTRO" -y \
 && rosdep install --from-paths src --ignore-src --rosdistro "$ROS_DISTRO" --dependency-types exec \
      --simulate --reinstall -y | sed -n 's/.*apt-get install -y //p' | sort -u > /opt/exec-deps.txt \
 && test -s /opt/exec-deps.txt \
 && rm -rf /var/lib/apt/lists/*
# Python packages that rosdep does not know, pinned by requirements/constraints.txt. Left out on purpose:
# the development/test section (pytest, ruff, linters), the ROS wheels (ROS comes from apt here) and
# numpy (the ROS message extensions are compiled against Ubuntu's numpy 1.x; a pip numpy 2 breaks them).
COPY requirements/python.txt requirements/constraints.txt requirements/
RUN python3 -m venv --system-site-packages /opt/venv \
 && sed -e '/^# development and tests/,$d' -e '/^numpy\b/d' requirements/python.txt > /tmp/runtime.txt \
 && grep -q '^nats-py' /tmp/runtime.txt \
 && /opt/venv/bin/pip install -c requirements/constraints.txt -r /tmp/runtime.txt \
 && /opt/venv/bin/pip install -c requirements/constraints.txt colcon-common-extensions
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv
COPY src/ src/
COPY launch/ launch/
COPY config/ config/
COPY web/ web/
# colcon from the venv, so the installed entry points run the venv's python (with nats-py & co).
RUN . "/opt/ros/$ROS_DISTRO/setup.bash" \
 && colcon build --base-paths src --event-handlers console_cohesion- summary+ \
      --packages-skip robot_platform_mosquitto_auth \
      --cmake-args -DPython3_EXECUTABLE=/opt/venv/bin/python -DBUILD_TESTING=OFF \
 && rm -rf build log

# ---- runtime: ROS core + exec deps, the venv and the install tree, non-root ------------------------
FROM ${ROS_RUNTIME_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/exec-deps.txt /opt/exec-deps.txt
# hadolint ignore=DL3008
RUN apt-get update \
 && xargs -a /opt/exec-deps.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 robot \
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
