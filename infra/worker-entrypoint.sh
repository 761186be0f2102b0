#!/usr/bin/env bash
# Point this checkout's DVC at the shared remote (written to .dvc/config.local, which git ignores);
# the S3 credentials stay in the environment, where dvc-s3 reads them.
set -euo pipefail
if [[ -n "${BAYLING_DVC_REMOTE:-}" ]]; then
  dvc remote add --local --force --default store "$BAYLING_DVC_REMOTE"
  if [[ -n "${BAYLING_DVC_ENDPOINT_URL:-}" ]]; then
    dvc remote modify --local store endpointurl "$BAYLING_DVC_ENDPOINT_URL"
  fi
fi
exec "$@"
