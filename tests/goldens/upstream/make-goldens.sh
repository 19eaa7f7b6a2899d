#!/bin/bash
# Usage: make-goldens.sh GOLDEN_DIR UPSTREAM_SCRIPTS_DIR INPUTS_MAKER
set -u
for case_dir in "$1"/*/; do
    [ -f "$case_dir/config" ] || continue  # passthrough-xl/ is not a script case
    work=$(mktemp -d)
    python3 "$3" "$work" > /dev/null
    cp "$case_dir/config" "$work/config"
    (cd "$work" && SOURCE_DATE_EPOCH=1700000000 bash "$2/uboot-script-gen" -c config -d . $(cat "$case_dir/args") > stdout 2> stderr; echo $? > exit-code)
    rm -rf "$case_dir/expected"; mkdir "$case_dir/expected"
    cp "$work"/stdout "$work"/exit-code "$case_dir/expected/"
    for f in "$work"/*.source "$work"/*.its "$work"/*-fit.dtb; do [ -f "$f" ] && cp "$f" "$case_dir/expected/"; done
    for f in "$work"/*.scr "$work"/*.ub; do [ -f "$f" ] && dumpimage -l "$f" | grep -v 'Created:' > "$case_dir/expected/$(basename "$f").dumpimage"; done
    for f in "$work"/*.fit; do [ -f "$f" ] && dumpimage -l "$f" | grep -v 'Created:' > "$case_dir/expected/$(basename "$f").dumpimage-l"; done
    rm -rf "$work"
done
