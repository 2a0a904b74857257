#!/usr/bin/env bash
# Run the multisigner daemon container (packaging/container/Containerfile) the way it is
# meant to run: read-only root filesystem, no capabilities, config and keys mounted.
#   packaging/container/run.sh [IMAGE]        (podman; ENGINE=docker for docker)
# Expects on the host:
#   /etc/multisigner/multisigner.toml  the config (state url, providers, zones); its
#                                      secrets as ${VARS} taken from secrets.env
#   /etc/multisigner/secrets.env       P0_API_KEY=... (mode 0600)
#   /etc/multisigner/history.key       optional: key_file for an authenticated history
# and a named volume multisigner-state for /var/lib/multisigner (the SQLite state DB and
# keys/, the owner KSK file store). With PostgreSQL, the volume keeps only keys/.
set -euo pipefail
ENGINE=${ENGINE:-podman}
IMAGE=${1:-multisigner}
exec "$ENGINE" run --name multisigner --detach \
  --read-only --tmpfs /tmp \
  --cap-drop=ALL --security-opt=no-new-privileges \
  --user 65532:65532 \
  --volume /etc/multisigner:/etc/multisigner:ro \
  --volume multisigner-state:/var/lib/multisigner \
  --env-file /etc/multisigner/secrets.env \
  --env MULTISIGNER_REPLICA="$(hostname)" \
  --publish 127.0.0.1:9477:9477 \
  "$IMAGE"
