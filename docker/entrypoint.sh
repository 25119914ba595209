#!/usr/bin/env bash
# The image's entrypoint: STAGE [ARGS...] -> python -m pipeline.<module> ARGS, with the store volume
# (--store /store, or /store as `store`'s positional argument) added when ARGS name none.
#   DAKD_STORE               the store to add (default /store)
#   DAKD_PYTHON              the interpreter (default: python on PATH, the image's venv)
#   DAKD_ENTRYPOINT_DRY_RUN  when 1, print the command instead of running it
set -euo pipefail

usage() {
    cat <<'EOF'
usage: docker run --gpus all IMAGE STAGE [ARGS...]

stages: extract train evaluate detect grid store fetch import-features demo
  extract VIDEOS... [--backbones i3d,s3d,clip]   stage 1: features into the store
  train {teacher,student,lanet,lightning} ...    stages 2-3
  evaluate RUN...                                stage 4: metrics on the test split
  detect VIDEOS... [--model RUN]                 score new videos with a trained run
  grid --dataset DATASET                         baselines and ablations
  store [STORE] [--runs]                         what the store holds
  fetch                                          real weights into /weights, once
  import-features LIST... --backbone NAME        community .npy features into the store
  demo                                           the whole chain on synthetic videos

Each stage is `python -m pipeline.<stage>` (import-features: pipeline.import_features);
`IMAGE STAGE --help` shows its options. The store volume (/store, or $DAKD_STORE) is added
as --store unless ARGS give one.
EOF
}

store="${DAKD_STORE:-/store}"
python="${DAKD_PYTHON:-python}"

stage="${1:-}"
case "$stage" in
    -h | --help | help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac
shift

# How each stage takes the store: an --store option, a positional argument, or not at all.
case "$stage" in
    extract | train | evaluate | detect | grid) module="$stage"; takes=option ;;
    import-features | import_features) module=import_features; takes=option ;;
    store) module=store; takes=positional ;;
    fetch | demo) module="$stage"; takes=none ;;
    *)
        echo "error: unknown stage '$stage'" >&2
        usage >&2
        exit 2
        ;;
esac

args=("$@")
if [[ "$takes" == option ]]; then
    given=0
    for a in "$@"; do
        case "$a" in --store | --store=*) given=1 ;; esac
    done
    if ((!given)); then args+=(--store "$store"); fi
elif [[ "$takes" == positional ]]; then
    # `store` has one option with a value (--backbone); any other word that is not an option is the store.
    given=0 skip=0
    for a in "$@"; do
        if ((skip)); then skip=0; continue; fi
        case "$a" in
            --backbone) skip=1 ;;
            -*) ;;
            *) given=1 ;;
        esac
    done
    if ((!given)); then args+=("$store"); fi
fi

cmd=("$python" -m "pipeline.$module" "${args[@]}")
if [[ "${DAKD_ENTRYPOINT_DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    printf '\n'
    exit 0
fi
exec "${cmd[@]}"
