#!/usr/bin/env bash
# Regenerate expected/ of every seed case (the folders with an `args` file) by running the
# original 2021 ImageBuilder `uboot-script-gen` (commit 79cd8f3, 2021-04-16, as in the public
# mirror github.com/vmayoral/imagebuilder) outside this repository, on the inputs that
# tests/inputs.py writes. Only its outputs are kept.
#
# One fix is applied to the original before it runs, the one upstream merged the same day
# (95ba62e): the dom0 ramdisk is loaded, and its /chosen node written, whenever DOM0_RAMDISK is
# set, not only when LOAD_CMD is tftpb. The seed carries a pre-review variant of the commit that
# limited it to tftp; 95ba62e's uboot-script-gen differs from the seed's in exactly these two
# conditions, and the script checks that the edit took.
#
# Usage: make-goldens.sh SEED_GIT_DIR     (a clone or mirror holding commit 79cd8f3)
set -eu
seed=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git -C "$seed" show 79cd8f3:scripts/uboot-script-gen > "$work/uboot-script-gen"
sed -i -e 's/^    if test "\$LOAD_CMD" = "tftpb"$/    if test "$DOM0_RAMDISK"/' \
       -e 's/^if test "\$DOM0_RAMDISK" && \[\[ \$LOAD_CMD = "tftpb" \]\]$/if test "$DOM0_RAMDISK"/' \
       "$work/uboot-script-gen"
if grep -q 'test "\$LOAD_CMD" = "tftpb"$\|&& \[\[ \$LOAD_CMD = "tftpb" \]\]' "$work/uboot-script-gen" \
        || [ "$(grep -c '^ *if test "\$DOM0_RAMDISK"$' "$work/uboot-script-gen")" != 2 ]; then
    echo "make-goldens.sh: the dom0 ramdisk fix did not apply to 79cd8f3's script" >&2
    exit 1
fi

for case_dir in "$here"/*/; do
    [ -f "$case_dir/args" ] || continue
    name=$(basename "$case_dir")
    mkdir "$work/$name"
    (cd "$repo" && python3 -m tests.inputs "$work/$name")
    cp "$case_dir/config" "$work/$name/config"
    rm -rf "$case_dir/expected"
    mkdir "$case_dir/expected"
    status=0
    # args is shell words (`-t "load mmc 1:2"`): eval splits them as a shell would.
    (cd "$work/$name" && eval "set -- $(cat "$case_dir/args")" && SOURCE_DATE_EPOCH=1700000000 \
        bash "$work/uboot-script-gen" -c config -d . "$@" \
        > "$case_dir/expected/stdout" 2> /dev/null) || status=$?
    echo "$status" > "$case_dir/expected/exit-code"
    for f in "$work/$name"/*.source; do
        if [ -f "$f" ]; then cp "$f" "$case_dir/expected/"; fi
    done
    # The script image as its `dumpimage -l` listing, without the "Created" line.
    for f in "$work/$name"/*.scr; do
        if [ -f "$f" ]; then
            dumpimage -l "$f" | grep -v 'Created:' > "$case_dir/expected/$(basename "$f").dumpimage-l"
        fi
    done
done
