#!/bin/bash
# The attack studies' reference runs: each study on the full offline CIFAR-10 and the zoo's models,
# one after another in the background, resumably (a study's result store keeps every finished cell;
# start the script again and it goes on). Each finished run's results.csv (gzipped when large), finding, figures and the
# exact command are copied to docs/results/NAME/ and the report page docs/results/report.html is
# rebuilt; commit them. The README's verdict table quotes these runs.
#
#   RBL_DATA=/path/to/data nohup tools/reference_runs.sh channel_sweep adaptive_vs_nonadaptive &
#
# With no study named: all of them, in dependency order. Work folders: ~/.cache/robustbench_bl/reference/
# (adaptive_vs_nonadaptive and leaderboard read channel_sweep's tuned strengths there). Log:
# ~/.cache/robustbench_bl/logs/reference-NAME.log. One thread: two runs of different studies may go side by side.
# adaptive_vs_nonadaptive and leaderboard take the shipped channel sweep's strengths
# (docs/results/channel_sweep/results.csv) when it is there, else they run the sweep first.
#
# A run outlives the machine it ran on: `tools/reference_runs.sh --save NAME...` keeps the finished
# cells of runs still going in docs/results/NAME/cells.jsonl.gz (the study's results store, gzipped;
# commit it), and a run whose work folder has no store yet (a new machine) starts from that file.
# The file is removed when the run finishes and ships its results. Each row records the attacker's
# precision ('auto' picks bf16 on a CPU with native bf16, float32 elsewhere): a run continued on
# another kind of machine can mix the two across cells, and its rows say which.
set -u
cd "$(dirname "$0")/.."
# Images per study (issue 27): the channel sweep tunes on half and judges on the other half.
declare -A IMAGES=(
    [channel_sweep]=2000
    [adaptive_vs_nonadaptive]=1000
    [leaderboard]=1000
    [decision_based]=500
    [instability]=500
)
work=$HOME/.cache/robustbench_bl/reference
logs=$HOME/.cache/robustbench_bl/logs
if [ "${1:-}" = "--save" ]; then
    shift
    for name in "$@"; do
        store=$work/$name/results.jsonl
        [ -f "$store" ] || { echo "no finished cells of $name at $store" >&2; exit 1; }
        mkdir -p "docs/results/$name"
        gzip -9 -n -c "$store" >"docs/results/$name/cells.jsonl.gz"
        echo "$name: $(wc -l <"$store") finished cells kept in docs/results/$name/cells.jsonl.gz"
    done
    exit 0
fi
studies=("$@")
[ ${#studies[@]} -eq 0 ] && studies=(channel_sweep adaptive_vs_nonadaptive leaderboard decision_based instability)
data=${RBL_DATA:?set RBL_DATA to the offline data folder (the reference runs need the full test set)}
mkdir -p "$work" "$logs"
sweep=docs/results/channel_sweep/results.csv
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for name in "${studies[@]}"; do
    images=${IMAGES[$name]:?no reference size for study $name (one of: ${!IMAGES[*]})}
    # RBL_ZOO_DIR (another zoo folder) is part of the command; the rows'
    # model_key names each model's weights by sha256 either way.
    given=()
    case $name in adaptive_vs_nonadaptive | leaderboard) [ -f "$sweep" ] && given=(--channel-sweep "$sweep") ;; esac
    command=(${RBL_ZOO_DIR:+RBL_ZOO_DIR=$RBL_ZOO_DIR} python "studies/$name.py" --images "$images" --data "\$RBL_DATA" "${given[@]}" --quiet)
    log=$logs/reference-$name.log
    kept=docs/results/$name/cells.jsonl.gz
    if [ -f "$kept" ] && [ ! -f "$work/$name/results.jsonl" ]; then
        mkdir -p "$work/$name"
        gunzip -c "$kept" >"$work/$name/results.jsonl"
        echo "=== $name: $(wc -l <"$work/$name/results.jsonl") finished cells taken from $kept" >>"$log"
    fi
    echo "=== $name start $(date)" >>"$log"
    if .venv/bin/python "studies/$name.py" --images "$images" --data "$data" "${given[@]}" --quiet --out "$work/$name" >>"$log" 2>&1; then
        shipped=docs/results/$name
        mkdir -p "$shipped"
        cp "$work/$name"/finding.{json,txt} "$work/$name"/*.png "$shipped"/
        # A table over 5 MB ships gzipped (pandas and `rbl report` read results.csv.gz as they read the CSV).
        rm -f "$shipped"/results.csv{,.gz}
        if [ "$(stat -c %s "$work/$name/results.csv")" -gt 5000000 ]; then
            gzip -9 -n -c "$work/$name/results.csv" >"$shipped/results.csv.gz"
        else
            cp "$work/$name/results.csv" "$shipped"/
        fi
        printf '%s\n' "${command[*]} --out docs/results/$name" >"$shipped/command.txt"
        rm -f "$kept"
        .venv/bin/python -m robustbench_bl report docs/results >>"$log" 2>&1
        echo "=== $name end rc=0 $(date)" >>"$log"
    else
        echo "=== $name end rc=$? $(date)" >>"$log"
    fi
done
