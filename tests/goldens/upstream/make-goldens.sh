#!/bin/bash
# Run upstream uboot-script-gen (xlnx_rel_v2023.2, 297a48f) on each case; keep only its outputs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
script=$1  # upstream scripts/uboot-script-gen, beside its scripts/common
out=$2
for dir in "$here"/*/; do
    c=$(basename "$dir")
    run=$(mktemp -d)
    python3 "${MAKE_INPUTS:?path of seed-goldens/make-inputs.py}" "$run"
    cp "$dir/config" "$run/config"
    (cd "$run" && bash "$script" -c config -d . $(cat "$dir/args") > stdout 2> stderr; echo $? > exit-code)
    mkdir -p "$out/$c/expected"
    cp "$dir/config" "$dir/args" "$out/$c/"
    cp "$run/stdout" "$run/exit-code" "$run/boot.source" "$out/$c/expected/"
    dumpimage -l "$run/boot.scr" | grep -v '^Created:' > "$out/$c/expected/boot.scr.dumpimage"
    if [ -f "$run/xen.ub" ]; then
        dumpimage -l "$run/xen.ub" | grep -v '^Created:' > "$out/$c/expected/xen.ub.dumpimage"
    fi
    rm -rf "$run"
done
