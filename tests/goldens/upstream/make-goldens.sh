#!/usr/bin/env bash
# Regenerate expected/ of every case (the folders with an `args` file) by running upstream
# ImageBuilder's uboot-script-gen (Xilinx mirror, branch xlnx_rel_v2023.2 = upstream 37ba04b
# 2022-12-09 + two Xilinx commits) outside this repository. Only its outputs are kept.
# The inputs are the ones tests/inputs.py writes.
# Usage: make-goldens.sh UPSTREAM_GIT_DIR
set -eu
upstream=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
mkdir "$work/scripts"
for f in uboot-script-gen common; do
    # 297a48f: the tip of xlnx_rel_v2023.2 (a clone names it origin/xlnx_rel_v2023.2).
    git -C "$upstream" show "297a48f:scripts/$f" > "$work/scripts/$f"
done
for case_dir in "$here"/*/; do
    [ -f "$case_dir/args" ] || continue  # passthrough-xl/ is made differently (its README)
    name=$(basename "$case_dir")
    rm -rf "$work/$name" "$case_dir/expected"
    mkdir -p "$work/$name" "$case_dir/expected"
    (cd "$repo" && python3 -m tests.inputs "$work/$name")
    cp "$case_dir/config" "$work/$name/config"
    status=0
    # shellcheck disable=SC2046
    (cd "$work/$name" && SOURCE_DATE_EPOCH=1700000000 \
        bash "$work/scripts/uboot-script-gen" -c config -d . $(cat "$case_dir/args") \
        > "$case_dir/expected/stdout" 2> /dev/null) || status=$?
    echo "$status" > "$case_dir/expected/exit-code"
    # The script, and in FIT mode the .its and the offline-edited DTB; the .fit is kept as its
    # `dumpimage -l` listing only (it holds copies of the inputs).
    for f in "$work/$name"/*.source "$work/$name"/*.its "$work/$name"/*-fit.dtb; do
        if [ -f "$f" ]; then cp "$f" "$case_dir/expected/"; fi
    done
    # Script images and bootm's xen.ub as their `dumpimage -l` listings.
    for f in "$work/$name"/*.scr "$work/$name"/*.ub; do
        if [ -f "$f" ]; then
            dumpimage -l "$f" | grep -v 'Created:' > "$case_dir/expected/$(basename "$f").dumpimage"
        fi
    done
    for f in "$work/$name"/*.fit; do
        if [ -f "$f" ]; then
            dumpimage -l "$f" | grep -v 'Created:' > "$case_dir/expected/$(basename "$f").dumpimage-l"
        fi
    done
done
rm -rf "$work"
