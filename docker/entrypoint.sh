#!/usr/bin/env bash
# The image's entrypoint: `dakd "$@"`, with the store volume as every subcommand's default store.
#   DAKD_STORE               the store `--store` defaults to (default /store); an explicit --store wins
#   DAKD_ENTRYPOINT_DRY_RUN  when 1, print the command (and the store) instead of running it
# `IMAGE --help` lists the subcommands, `IMAGE STAGE --help` a subcommand's options (pipeline/cli/).
set -euo pipefail

export DAKD_STORE="${DAKD_STORE:-/store}"

cmd=(dakd "$@")
if [[ "${DAKD_ENTRYPOINT_DRY_RUN:-0}" == 1 ]]; then
    printf 'DAKD_STORE=%q ' "$DAKD_STORE"
    printf '%q ' "${cmd[@]}"
    printf '\n'
    exit 0
fi
exec "${cmd[@]}"
