"""The shell text of the completion script (ibtasks.cli.completion fills in the @NAMES@ from the
argparse parser and doit's commands). One bash function serves bash and zsh (through zsh's
bashcompinit, which calls it under `emulate sh`: arrays from 0, words split on IFS); its local
names avoid zsh's special parameters (`options`, `commands`, `words`)."""

# The hidden flag the script calls back with the command line typed so far (not in --help: it
# is the script's, not a user's; the README's "Shell completion" names it).
COMPLETE_TASKS_FLAG = "--complete-tasks"

BASH_FUNCTIONS = r"""# Completion for ibtasks @VERSION@ (`ibtasks SUBCOMMAND ... -- tabcompletion`):
# subcommands, their flags and flag values; after `--`, doit's commands and the task names of
# the graph the words before `--` build (`ibtasks --complete-tasks LINE` lists them).

_ibtasks_reply() {  # COMPREPLY += the words of $1 that start with $2
    local word
    for word in $1; do
        [[ $word == "$2"* ]] && COMPREPLY+=("$word")
    done
    return 0
}

_ibtasks_paths() {  # COMPREPLY += the file names ($1 file) or folder names ($1 dir) for $cur
    local typed=${cur//\\/} found
    typed=${typed#[\"\']}
    while IFS= read -r found; do
        [[ -n $found ]] && COMPREPLY+=("$found")
    done < <(if [[ $1 == dir ]]; then compgen -d -- "$typed"; else compgen -f -- "$typed"; fi)
    type compopt >/dev/null 2>&1 && compopt -o filenames 2>/dev/null
    return 0
}

_ibtasks_value() {  # "SUBCOMMAND FLAG" or "-- COMMAND OPTION" taking a value: offer it
    case $1 in
@VALUES@
    esac
    return 1
}

_ibtasks_task_names() {  # COMPREPLY += the task names of the words typed before `--`
    local line=${COMP_LINE:0:$COMP_POINT} word before name names prog=${COMP_WORDS[0]}
    local typed=$cur
    word=${line##*[[:space:]]}  # the whole word: bash splits `ib_check:XEN` at ':'
    # Right after a ':' bash's current word is the ':' itself, but readline replaces only
    # what follows it: offer the rest of each name after the ':'.
    [[ $typed == : ]] && typed=''
    before=${word%"$typed"}
    before=${before//\\/}
    word=${word//\\/}
    if (( @HARDCODED@ )); then
        names=@TASKS@
    else
        [[ $prog == */* && -x $prog ]] || prog=ibtasks
        names=$(command "$prog" @FLAG@ "${line%%' -- '*}" </dev/null 2>/dev/null)
    fi
    while IFS= read -r name; do
        [[ -n $name && $name == "$word"* ]] && COMPREPLY+=("${name:${#before}}")
    done <<< "$names"
    # As for file names, readline quotes what it inserts (`DOMU_KERNEL\[0\]`).
    type compopt >/dev/null 2>&1 && compopt -o filenames 2>/dev/null
    return 0
}

_ibtasks() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev='' sub='' dd=0 i
    local flags='' doit=0 cmd takes_tasks=0 takes_commands=0
    COMPREPLY=()
    (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
    if [[ $cur == = ]]; then  # `--flag=` (bash splits the word at '=')
        cur=''
    elif [[ $prev == = ]] && (( COMP_CWORD > 1 )); then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    for (( i = 1; i < COMP_CWORD; i++ )); do
        case ${COMP_WORDS[i]} in
            --) dd=$i; break;;
            -*) ;;
            *) [[ -z $sub ]] && sub=${COMP_WORDS[i]};;
        esac
    done
    if [[ -z $sub ]]; then
        _ibtasks_reply @TOP@ "$cur"
        return 0
    fi
    case $sub in
@SUBCOMMANDS@
        *) return 0;;
    esac
    if (( dd == 0 )); then
        _ibtasks_value "$sub $prev" && return 0
        if [[ -z $cur || $cur == -* ]]; then
            _ibtasks_reply "$flags" "$cur"
            (( doit )) && _ibtasks_reply -- "$cur"
        fi
        return 0
    fi
    (( doit )) || return 0
    if (( COMP_CWORD == dd + 1 )); then
        _ibtasks_reply @DOIT_COMMANDS@ "$cur"
        return 0
    fi
    cmd=${COMP_WORDS[dd+1]}
    case $cmd in
@DOIT_CASES@
        *) return 0;;
    esac
    _ibtasks_value "-- $cmd $prev" && return 0
    if [[ $cur == -* ]]; then
        _ibtasks_reply "$flags" "$cur"
        return 0
    fi
    (( takes_commands )) && _ibtasks_reply @DOIT_COMMANDS@ "$cur"
    (( takes_tasks )) && _ibtasks_task_names
    return 0
}
"""

ZSH_PREAMBLE = r"""# zsh: source this file from ~/.zshrc. It loads compinit when it is not loaded
# yet, and bashcompinit, which runs the bash completion function below.
(( ${+functions[compdef]} )) || { autoload -U compinit && compinit; }
autoload -U +X bashcompinit && bashcompinit

"""
