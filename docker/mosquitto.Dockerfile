# syntax=docker/dockerfile:1
# Mosquitto image of the control server: the official eclipse-mosquitto image plus robot_platform's
# client-id plugin (src/robot_platform_mosquitto_auth/rp_client_id_auth.c), compiled in a build stage on
# the same Alpine base. docker/mosquitto/mosquitto.conf (rendered from config/mosquitto/) loads it from
# /usr/lib/robot_platform/: a certificate may connect only with its own client ids. Build from the
# repository root:
#
#   docker build -f docker/mosquitto.Dockerfile -t robot-platform/mosquitto:0.1.0 .
#
# Pin the base by digest for a site release (unknown offline, hence a build argument):
#   docker buildx imagetools inspect eclipse-mosquitto:2.0.21                 # -> Digest: sha256:...
#   docker build -f docker/mosquitto.Dockerfile \
#     --build-arg MOSQUITTO_IMAGE=eclipse-mosquitto:2.0.21@sha256:<digest> -t robot-platform/mosquitto:0.1.0 .
#
# No secret is part of the image: the certificates are mounted at run time (/run/secrets).
ARG MOSQUITTO_IMAGE=eclipse-mosquitto:2.0.21

# ---- build: the plugin against Alpine's mosquitto-dev headers (plugin API 5, stable across 2.0.x) ------
FROM ${MOSQUITTO_IMAGE} AS build
# hadolint ignore=DL3018
RUN apk add --no-cache build-base mosquitto-dev openssl-dev
COPY src/robot_platform_mosquitto_auth/rp_client_id_auth.c /build/
RUN cc -shared -fPIC -O2 -Wall -Wextra -Werror -o /build/rp_client_id_auth.so /build/rp_client_id_auth.c -lcrypto

# ---- runtime: the official image, the plugin, non-root -------------------------------------------------
FROM ${MOSQUITTO_IMAGE} AS runtime
# uid 1883 = the image's mosquitto user
COPY --from=build /build/rp_client_id_auth.so /usr/lib/robot_platform/rp_client_id_auth.so
USER 1883:1883
EXPOSE 8883
# The health check connects with the healthcheck certificate and its own client id (CN = healthcheck).
HEALTHCHECK --interval=15s --timeout=8s --start-period=10s --retries=3 \
  CMD ["mosquitto_sub", "-h", "localhost", "-p", "8883", "--cafile", "/run/secrets/ca.crt", \
       "--cert", "/run/secrets/healthcheck.crt", "--key", "/run/secrets/healthcheck.key", "-i", "healthcheck", \
       "-t", "$SYS/broker/version", "-C", "1", "-W", "5"]
