#!/usr/bin/env bash
# Generate every secret the container deployment needs, on the operator's machine, never in an image:
#   a site CA; TLS certificates for the three NATS hub nodes, Mosquitto, the jobs service, the MQTT health
#   check and each robot (one certificate per robot serves both its NATS leaf link and its MQTT client,
#   CN = robot id, which Mosquitto's ACL uses as the user name); the Grafana admin password; SeaweedFS S3
#   identities and the jobs service's S3 credentials.
#
#   docker/gen-secrets.sh                       # writes docker/secrets/ (git-ignored)
#   ROBOTS="r1 r2 r3" SECRETS_DIR=/srv/rp/secrets docker/gen-secrets.sh
#   docker/gen-secrets.sh --force               # regenerate everything (rotates the CA: robots need new certs)
#
# Existing files are kept (run again to add certificates for new robots). Needs only openssl.
# Permissions: the directory is 0700 (only its owner on the host can read anything in it); the files in it
# are 0644 so that the non-root users inside the containers (nats, mosquitto, uid 10001) can read the
# bind-mounted copies. Keep the directory on the host's local disk, owned by the deploying user.
set -euo pipefail
set -f   # ROBOTS and HUB_NODES are split on spaces, never globbed
umask 077
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${SECRETS_DIR:-$HERE/secrets}"
ROBOTS="${ROBOTS:-r1 r2 r3 r4 r5 r6}"
HUB_NODES="${HUB_NODES:-nats-1 nats-2 nats-3}"
DAYS="${CERT_DAYS:-825}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1
command -v openssl >/dev/null || { echo "gen-secrets: openssl is required" >&2; exit 1; }
mkdir -p "$OUT/robots"
chmod 700 "$OUT"
if [ "$FORCE" = 1 ]; then rm -f "$OUT"/*.crt "$OUT"/*.key "$OUT"/*.txt "$OUT"/*.json "$OUT"/*.ini "$OUT"/robots/*; fi
say() { printf '[gen-secrets] %s\n' "$*"; }
valid_name() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$ ]] || { echo "gen-secrets: bad name '$1'" >&2; exit 1; }; }
random_token() { openssl rand -hex "${1:-24}"; }

if [ ! -f "$OUT/ca.key" ]; then
  say "site CA"
  openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/ca.key"
  openssl req -x509 -new -key "$OUT/ca.key" -sha256 -days 3650 -subj "/O=robot_platform/CN=robot_platform site CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$OUT/ca.crt"
fi

# cert <path without extension> <common name> <extendedKeyUsage> [DNS SAN...]
cert() {
  local base="$1" cn="$2" eku="$3"; shift 3
  [ -f "$base.crt" ] && return 0
  local ext; ext="$(mktemp)"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    if [ $# -gt 0 ]; then
      local san="" d
      for d in "$@"; do san="${san:+$san,}DNS:$d"; done
      echo "subjectAltName=$san"
    fi
  } > "$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$base.key"
  openssl req -new -key "$base.key" -subj "/O=robot_platform/CN=$cn" -out "$base.csr"
  openssl x509 -req -in "$base.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial -days "$DAYS" \
    -sha256 -extfile "$ext" -out "$base.crt" 2>/dev/null
  rm -f "$base.csr" "$ext"
  say "certificate $cn"
}

for node in $HUB_NODES; do
  valid_name "$node"
  # Hub nodes are servers (clients, leaf nodes) and clients (routes to the other nodes).
  cert "$OUT/$node" "$node" serverAuth,clientAuth "$node" nats-hub nats localhost
done
cert "$OUT/mosquitto" mosquitto serverAuth mosquitto localhost
cert "$OUT/jobs-service" jobs-service clientAuth
cert "$OUT/mqtt-healthcheck" healthcheck clientAuth
for robot in $ROBOTS; do
  valid_name "$robot"
  # Mosquitto lets a certificate use the client ids <CN>, deploy-<CN>, health-<CN>: no robot named like one.
  case "$robot" in deploy-*|health-*) echo "gen-secrets: bad name '$robot' (reserved MQTT client id prefix)" >&2; exit 1;; esac
  cert "$OUT/robots/$robot" "$robot" clientAuth "$robot"
done

if [ ! -f "$OUT/grafana-admin-password.txt" ]; then
  random_token 18 > "$OUT/grafana-admin-password.txt"; say "Grafana admin password"
fi
if [ ! -f "$OUT/s3-config.json" ]; then
  jobs_key="$(random_token 10)"; jobs_secret="$(random_token 20)"
  robots_key="$(random_token 10)"; robots_secret="$(random_token 20)"
  # SeaweedFS S3 identities: the jobs service writes packages, robots only read them.
  cat > "$OUT/s3-config.json" <<JSON
{
  "identities": [
    {"name": "jobs-service", "credentials": [{"accessKey": "$jobs_key", "secretKey": "$jobs_secret"}],
     "actions": ["Read", "Write", "List", "Tagging"]},
    {"name": "robots", "credentials": [{"accessKey": "$robots_key", "secretKey": "$robots_secret"}],
     "actions": ["Read", "List"]}
  ]
}
JSON
  # AWS shared-credentials files (boto3 reads AWS_SHARED_CREDENTIALS_FILE).
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$jobs_key" "$jobs_secret" \
    > "$OUT/s3-jobs-credentials.ini"
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$robots_key" "$robots_secret" \
    > "$OUT/s3-robots-credentials.ini"
  say "S3 identities"
fi
rm -f "$OUT/ca.srl"
find "$OUT" -type f -exec chmod 644 {} +
chmod 600 "$OUT/ca.key"   # the CA key is only needed here, never mounted into a container
find "$OUT" -type d -exec chmod 700 {} +
say "done: $OUT"
