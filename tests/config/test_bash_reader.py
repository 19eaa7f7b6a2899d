"""The bash config reader against bash itself.

Each valid snippet is also `source`d by a real `bash` (under `env -i`), which prints every element
of the named variables; the reader's assignments, folded the way the config layer folds them,
must give exactly the same elements.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from ibtasks.config.bash_reader import Assignment, parse_bash_config
from ibtasks.errors import UserError
from tests.conftest import GOLDENS

SEED_CONFIG = GOLDENS / "bash-syntax-custom-load" / "config"

# Prints name NUL key NUL value NUL for every element of every variable named in "$@".
_DUMP = r"""
set -e
source "$0" >/dev/null
for __ib_n in "$@"; do
  declare -n __ib_r="$__ib_n"
  for __ib_k in "${!__ib_r[@]}"; do
    printf '%s\0%s\0%s\0' "$__ib_n" "$__ib_k" "${__ib_r[$__ib_k]}"
  done
  unset -n __ib_r
done
"""

Values = dict[str, dict[str, str]]


def bash_values(
    text: str, names: list[str], tmp_path: Path, env: Mapping[str, str] | None = None
) -> Values:
    """What bash itself assigns: {name: {key: value}} for the named variables."""
    config = tmp_path / "config"
    config.write_text(text)
    env_args = [f"{k}={v}" for k, v in (env or {}).items()]
    argv = ["env", "-i", *env_args, "bash", "-c", _DUMP, str(config), *names]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    fields = out.split("\0")[:-1]
    values: Values = {}
    for name, key, value in zip(fields[0::3], fields[1::3], fields[2::3], strict=True):
        values.setdefault(name, {})[key] = value
    return values


def fold(assignments: list[Assignment], env: Mapping[str, str] | None = None) -> Values:
    """Apply assignments the way the config layer does: later wins, a marker resets."""
    env = env or {}
    values: Values = {}
    for a in assignments:
        if a.replaces_array:
            values[a.name] = {}
            continue
        start = {"0": env[a.name]} if a.name in env else {}
        values.setdefault(a.name, start)[a.index or "0"] = a.value
    return {name: elements for name, elements in values.items() if elements}


def parse(text: str, env: Mapping[str, str] | None = None) -> list[Assignment]:
    return parse_bash_config(text, "cfg", env or {})


def assert_same_as_bash(
    text: str, tmp_path: Path, env: Mapping[str, str] | None = None, bash_prefix: str = ""
) -> Values:
    ours = fold(parse(text, env), env)
    names = sorted(ours) or ["UNSET_NAME"]
    theirs = bash_values(bash_prefix + text, names, tmp_path, env)
    assert ours == theirs
    return ours


# -- valid configs ---------------------------------------------------------------------------


def test_seed_golden_config_gives_the_values_bash_gives(tmp_path: Path) -> None:
    text = SEED_CONFIG.read_text()
    values = assert_same_as_bash(text, tmp_path)
    assert values["XEN_CMD"] == {
        "0": "console=dtuart dtuart=serial0 dom0_mem=512M "
        "dom0_max_vcpus=1 bootscrub=0 vwfi=native sched=null"
    }
    assert values["DOM0_CMD"] == {"0": "console=hvc0 earlycon=xen clk_ignore_unused"}
    assert values["DOMU_KERNEL"] == {
        "0": "zynqmp-dom1/Image-domU",
        "1": "zynqmp-dom2/Image-domU",
    }
    by_name = {(a.name, a.index): a for a in parse(text)}
    assert by_name["DOMU_KERNEL", "0"].line == 18
    assert by_name["DOM0_CMD", None].line == 14
    assert by_name["MEMORY_START", None] == Assignment("MEMORY_START", None, "0x40000000", 3)


def test_scalar_indexed_and_exported_assignments_come_back_in_file_order(
    tmp_path: Path,
) -> None:
    text = "A=1\nexport B=2\nC[3]=x\nA=4\n"
    assert parse(text) == [
        Assignment("A", None, "1", 1),
        Assignment("B", None, "2", 2),
        Assignment("C", "3", "x", 3),
        Assignment("A", None, "4", 4),
    ]
    assert_same_as_bash(text, tmp_path)


def test_export_of_a_name_alone_assigns_nothing(tmp_path: Path) -> None:
    text = "export A\nexport\nB=1\nexport B C=2\n"
    assert parse(text) == [Assignment("B", None, "1", 3), Assignment("C", None, "2", 4)]
    assert_same_as_bash(text, tmp_path)


def test_associative_index_is_kept_as_raw_text(tmp_path: Path) -> None:
    text = 'DOMU_VCPU_HARD_AFFINITY[0,1]="2"\nDOMU_VCPU_HARD_AFFINITY[1,0]=3-4\n'
    assert parse(text) == [
        Assignment("DOMU_VCPU_HARD_AFFINITY", "0,1", "2", 1),
        Assignment("DOMU_VCPU_HARD_AFFINITY", "1,0", "3-4", 2),
    ]
    # ImageBuilder declares this one associative before sourcing the config.
    assert_same_as_bash(text, tmp_path, bash_prefix="declare -A DOMU_VCPU_HARD_AFFINITY\n")


def test_declare_of_an_associative_array_is_accepted_and_assigns_nothing(tmp_path: Path) -> None:
    text = "declare -A AFF\nAFF[0,1]=2\n"
    assert parse(text) == [Assignment("AFF", "0,1", "2", 2)]
    assert_same_as_bash(text, tmp_path)


def test_append_gives_the_joined_value(tmp_path: Path) -> None:
    text = 'XEN_CMD="a b"\nXEN_CMD+=" c"\nD[1]=x\nD[1]+=y\nN+=z\n'
    assert parse(text)[1] == Assignment("XEN_CMD", None, "a b c", 2)
    assert parse(text)[3] == Assignment("D", "1", "xy", 4)
    assert parse(text)[4] == Assignment("N", None, "z", 5)
    assert_same_as_bash(text, tmp_path)


def test_append_to_an_environment_variable_starts_from_its_value(tmp_path: Path) -> None:
    env = {"PATHS": "/a"}
    assert parse("PATHS+=:/b\n", env) == [Assignment("PATHS", None, "/a:/b", 1)]
    assert_same_as_bash("PATHS+=:/b\nE[2]=x\n", tmp_path, env)


def test_array_literal_is_a_reset_marker_followed_by_its_elements(tmp_path: Path) -> None:
    text = 'A[5]=old\nA=(a "b c"\n  d)\n'
    assert parse(text) == [
        Assignment("A", "5", "old", 1),
        Assignment("A", None, "", 2, replaces_array=True),
        Assignment("A", "0", "a", 2),
        Assignment("A", "1", "b c", 2),
        Assignment("A", "2", "d", 3),
    ]
    assert assert_same_as_bash(text, tmp_path) == {"A": {"0": "a", "1": "b c", "2": "d"}}


def test_empty_array_literal_removes_every_element(tmp_path: Path) -> None:
    text = "A[1]=x\nA=()\nB=1\n"
    assert parse(text)[1] == Assignment("A", None, "", 2, replaces_array=True)
    assert "A" not in assert_same_as_bash(text, tmp_path)


def test_array_literal_with_subscripts_comments_and_append(tmp_path: Path) -> None:
    text = "A=([2]=x y # two and three\n [7]=z)\nA+=(w)\n"
    assert [(a.index, a.value) for a in parse(text) if not a.replaces_array] == [
        ("2", "x"),
        ("3", "y"),
        ("7", "z"),
        ("8", "w"),
    ]
    assert_same_as_bash(text, tmp_path)


def test_unquoted_expansion_in_an_array_is_split_into_elements(tmp_path: Path) -> None:
    text = 'X="a  b"\nE=\nA=($X "$X" $E "" x$E ${U:-c d} "${U:-e f}")\n'
    values = assert_same_as_bash(text, tmp_path)
    assert values["A"] == {"0": "a", "1": "b", "2": "a  b", "3": "", "4": "x", "5": "c"} | {
        "6": "d",
        "7": "e f",
    }


def test_empty_values(tmp_path: Path) -> None:
    text = "A=\nB=\"\"\nC=''\nD= # comment\n"
    assert [a.value for a in parse(text)] == ["", "", "", ""]
    assert_same_as_bash(text, tmp_path)


def test_adjacent_quoted_and_unquoted_parts_concatenate(tmp_path: Path) -> None:
    text = "A=\"x\"'y'z\nB='$X \\n'\"$'\"\n"
    assert [a.value for a in parse(text)] == ["xyz", "$X \\n$'"]
    assert_same_as_bash(text, tmp_path)


def test_double_quotes_expand_and_keep_unknown_backslashes(tmp_path: Path) -> None:
    text = 'X=v\nA="$X ${X} \\$X \\" \\\\ \\` \\q a#b $ end$"\n'
    assert parse(text)[1].value == 'v v $X " \\ ` \\q a#b $ end$'
    assert_same_as_bash(text, tmp_path)


def test_unquoted_words_take_backslash_escapes_and_expansions(tmp_path: Path) -> None:
    text = "X=v\nA=a\\ b\\q$X/${X}c\\$X#not-a-comment\n"
    assert parse(text)[1].value == "a bqv/vc$X#not-a-comment"
    assert_same_as_bash(text, tmp_path)


def test_ansi_c_strings_decode_escapes(tmp_path: Path) -> None:
    text = "A=$'a\\nb\\tc\\\\d\\'e\\x41\\101\\q'\n"
    assert parse(text)[0].value == "a\nb\tc\\d'eAA\\q"
    assert_same_as_bash(text, tmp_path)


def test_double_quoted_value_spanning_lines_keeps_the_newline(tmp_path: Path) -> None:
    text = 'A="one\ntwo"\nB=3\n'
    assert parse(text) == [Assignment("A", None, "one\ntwo", 1), Assignment("B", None, "3", 3)]
    assert_same_as_bash(text, tmp_path)


def test_backslash_newline_continues_the_line(tmp_path: Path) -> None:
    text = 'A=x\\\ny B="p \\\nq" \\\n C=3\n'
    assert parse(text) == [
        Assignment("A", None, "xy", 1),
        Assignment("B", None, "p q", 2),
        Assignment("C", None, "3", 4),
    ]
    assert_same_as_bash(text, tmp_path)


def test_comments_start_only_at_a_word(tmp_path: Path) -> None:
    text = "# heading\n  # indented\nA=a#b # tail\nB='#'\"#\" ;# after semicolon\n\n"
    assert parse(text) == [Assignment("A", None, "a#b", 3), Assignment("B", None, "##", 4)]
    assert_same_as_bash(text, tmp_path)


def test_several_assignments_on_one_line(tmp_path: Path) -> None:
    text = "A=1 B=2; C=3;D=$A$B$C\n"
    assert [(a.name, a.value) for a in parse(text)] == [
        ("A", "1"),
        ("B", "2"),
        ("C", "3"),
        ("D", "123"),
    ]
    assert_same_as_bash(text, tmp_path)


def test_expansion_forms_and_defaults(tmp_path: Path) -> None:
    text = (
        "E=\nA[1]=one\n"
        "R1=${A[1]}/${A}/$A/${A[9]}\n"
        "R2=${E:-d1}/${E-d2}/${U-d3}/${U:-$A[1]}\n"
        'R3="${U:-\'q\' "w x"}"\n'
        "R4=${U:-'q' \"w\"}\n"
    )
    values = assert_same_as_bash(text, tmp_path)
    assert values["R1"] == {"0": "one///"}
    assert values["R2"] == {"0": "d1//d3/[1]"}
    assert values["R3"] == {"0": "'q' w x"}
    assert values["R4"] == {"0": "q w"}


def test_names_come_from_the_file_first_then_the_environment(tmp_path: Path) -> None:
    env = {"IMG": "/env/img", "DIR": "/env"}
    text = 'A=$DIR/$IMG\nDIR=/file\nB="$DIR ${NOPE}x"\n'
    assert [a.value for a in parse(text, env)] == ["/env//env/img", "/file", "/file x"]
    assert_same_as_bash(text, tmp_path, env)


def test_tilde_at_the_start_of_a_value_is_home(tmp_path: Path) -> None:
    env = {"HOME": "/home/u"}
    text = "A=~\nB=~/x:~/y\nC='~'\nD=(~/z)\n"
    assert [a.value for a in parse(text, env) if not a.replaces_array] == [
        "/home/u",
        "/home/u/x:/home/u/y",
        "~",
        "/home/u/z",
    ]
    assert_same_as_bash(text, tmp_path, env)


VALID_SNIPPETS = [
    'XEN="xen"  ; DOM0_KERNEL=Image',
    "MEMORY_END=0x80000000 # inline comment",
    'DOMU_CMD[0]="console=ttyAMA0 root=/dev/ram0"\nDOMU_CMD[1]="${DOMU_CMD[0]} quiet"',
    "A=(x y)\nA[1]=z\nA+=(w)",
    "P=/srv\nDOMU_KERNEL[0]=\"$P\"/k\nDOMU_RAMDISK[0]=${P}'/r d'",
    "A=$'tab\\there'\"$'\"",
    "A=${B:-${C:-deep}}",
    'A="${B-}"x',
    "A=x B=$A C=${A}y",
    "A='multi\nline'\nB=2",
    'A=$\nB=a$\nC="$"',
    "export A=1 B\nexport C+=2",
    "A=b{1,2}c*\nB=[x]?",
    "A=(\n  one\n  'two'\n)",
    "A=1\\\n2",
    'X="a\n\tb"\nA=($X)',
]


@pytest.mark.parametrize("text", VALID_SNIPPETS)
def test_snippet_gives_the_values_bash_gives(text: str, tmp_path: Path) -> None:
    assert_same_as_bash(text + "\n", tmp_path)


# -- rejected configs -------------------------------------------------------------------------

RUN = "config files are read, not executed; "
ERRORS = {
    "command_substitution": (
        "A=1\nB=$(cat f)\n",
        2,
        f"command substitution $(...) is not supported: {RUN}write the value itself",
    ),
    "command_substitution_in_double_quotes": (
        'A="x $(cat f)"\n',
        1,
        f"command substitution $(...) is not supported: {RUN}write the value itself",
    ),
    "backticks": (
        "\nA=`cat f`\n",
        2,
        f"command substitution `...` is not supported: {RUN}write the value itself",
    ),
    "arithmetic_expansion": (
        "A=$((1+2))\n",
        1,
        f"arithmetic $((...)) is not supported: {RUN}write the number itself",
    ),
    "arithmetic_command": (
        "A=1\n((A++))\n",
        2,
        f"arithmetic ((...)) is not supported: {RUN}write the number itself",
    ),
    "if": ("if true; then A=1; fi\n", 1, f"`if` is not supported: {RUN}write plain assignments"),
    "for": (
        "for i in 1 2; do :; done\n",
        1,
        f"`for` is not supported: {RUN}write plain assignments",
    ),
    "while": (
        "while :; do :; done\n",
        1,
        f"`while` is not supported: {RUN}write plain assignments",
    ),
    "case": ("case x in esac\n", 1, f"`case` is not supported: {RUN}write plain assignments"),
    "source": (
        "A=1\nsource other.cfg\n",
        2,
        f"`source` is not supported: {RUN}copy the other file's assignments into this one",
    ),
    "dot": (
        ". other.cfg\n",
        1,
        f"`.` is not supported: {RUN}copy the other file's assignments into this one",
    ),
    "function_definition": (
        "f() { A=1; }\n",
        1,
        f"function definitions are not supported: {RUN}write plain assignments",
    ),
    "function_keyword": (
        "function f { A=1; }\n",
        1,
        f"`function` is not supported: {RUN}write plain assignments",
    ),
    "command": (
        "A=1\necho foo\n",
        2,
        f"command `echo` is not supported: {RUN}write only assignments (NAME=value)",
    ),
    "command_after_assignment": (
        "A=1 make\n",
        1,
        f"command `make` is not supported: {RUN}write only assignments (NAME=value)",
    ),
    "spaces_around_equals": (
        "A = 1\n",
        1,
        "`A =` is not an assignment: bash needs NAME=value without spaces around =",
    ),
    "redirection": (
        "A=1 > out\n",
        1,
        f"redirection `>` is not supported: {RUN}write plain assignments",
    ),
    "pipe": ("A=1 | cat\n", 1, f"pipe `|` is not supported: {RUN}write plain assignments"),
    "and_list": ("A=1 && B=2\n", 1, f"`&&` is not supported: {RUN}write plain assignments"),
    "or_list": ("A=1 || B=2\n", 1, f"`||` is not supported: {RUN}write plain assignments"),
    "background": ("A=1 &\n", 1, f"background `&` is not supported: {RUN}write plain assignments"),
    "unterminated_double_quote_names_the_opening_line": (
        'A=1\nB="abc\nC=2\n',
        2,
        'unterminated double quote: add the closing "',
    ),
    "unterminated_single_quote_names_the_opening_line": (
        "A='abc\n\n",
        1,
        "unterminated single quote: add the closing '",
    ),
    "unterminated_array": ("\nA=(a b\n", 2, "unterminated array A=( : add the closing )"),
    "index_that_is_not_digits": (
        "A[$i]=x\n",
        1,
        "array index `$i` in A[$i] is not a number: write the index as digits, e.g. A[0]",
    ),
    "index_with_leading_zero": (
        "A[08]=x\n",
        1,
        "array index A[08] has a leading zero, which bash reads as octal: "
        "write the index without leading zeros",
    ),
    "suffix_removal_operator": (
        "A=${B%x}\n",
        1,
        "parameter expansion ${B%x} is not supported: only $VAR, ${VAR}, ${VAR[n]}, "
        "${VAR:-word} and ${VAR-word} are; write the value itself",
    ),
    "length_operator": (
        "A=${#B}\n",
        1,
        "parameter expansion ${#B} is not supported: only $VAR, ${VAR}, ${VAR[n]}, "
        "${VAR:-word} and ${VAR-word} are; write the value itself",
    ),
    "positional_parameter": (
        "A=$1\n",
        1,
        f"special parameter $1 is not supported: {RUN}write the value itself",
    ),
    "all_arguments": (
        'A="$@"\n',
        1,
        f"special parameter $@ is not supported: {RUN}write the value itself",
    ),
    "process_id": (
        "A=${$}\n",
        1,
        f"special parameter $$ is not supported: {RUN}write the value itself",
    ),
    "glob_in_an_array": (
        "A=(*.dtb)\n",
        1,
        "glob character * inside an array is not supported: quote the element",
    ),
    "all_elements_of_an_array": (
        'A="${B[@]}"\n',
        1,
        "${B[@]} (all elements) is not supported: name one element, e.g. ${B[0]}",
    ),
    "unterminated_braced_expansion": ("A=1\nB=${C\n", 2, "unterminated ${ : add the closing }"),
    "text_glued_to_an_array_literal": (
        "A=(x)y\n",
        1,
        "text right after A=(...): put a space after the )",
    ),
    "redirection_of_a_numbered_descriptor": (
        "A=1 2>/dev/null\n",
        1,
        f"redirection `2>` is not supported: {RUN}write plain assignments",
    ),
    "local": ("local A=1\n", 1, f"`local` is not supported: {RUN}write plain assignments"),
    "declare_with_other_options": (
        "declare -x A=1\n",
        1,
        "`declare -x` is not supported: only `declare -A NAME` is; write plain assignments",
    ),
    "ansi_c_control_escape": (
        "A=$'\\cA'\n",
        1,
        "the escape \\c in $'...' is not supported: write the character",
    ),
    "tilde_of_another_user": (
        "A=~user/x\n",
        1,
        "tilde expansion other than ~ and ~/ is not supported: write the path",
    ),
    "stray_semicolons": ("A=1;;\n", 1, "unexpected `;`: write plain assignments"),
    "carriage_return": (
        "A=1\r\n",
        1,
        "carriage return (Windows line ending) found: convert the file to Unix line endings, "
        "e.g. with dos2unix",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS), ids=[f"{k}_is_rejected" for k in ERRORS])
def test_unsupported_bash_is_rejected_with_its_line(case: str) -> None:
    text, line, message = ERRORS[case]
    with pytest.raises(UserError) as caught:
        parse_bash_config(text, "dir/config", {})
    assert caught.value.where == f"dir/config:{line}"
    assert caught.value.message == message
    assert str(caught.value) == f"dir/config:{line}: {message}"
