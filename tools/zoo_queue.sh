#!/bin/bash
# Train zoo models one after another in the background, resumably: the zoo v2 plan is two of these
# queues side by side, one thread each (twice the throughput of one two-thread training here).
#
#   nohup tools/zoo_queue.sh A fastnet-0 fastnet-25 fastnet-85 fastnet-0-1ep fastnet-nw-0 fastnet-nw-85 &
#   nohup tools/zoo_queue.sh B fastnet-50 fastnet-0-s1 fastnet-50-s1 fastnet-e95 fastnet-0-2ep fastnet-nw-50 &
#
# Finished models (weights + card) go to $ZOO_OUT (default ~/.cache/robustbench_bl/zoo-v2); a killed
# training resumes from its per-epoch checkpoint in ~/.cache/robustbench_bl/zoo/NAME.partial.pt when
# the queue is started again. Logs: ~/.cache/robustbench_bl/logs/QUEUE.log. RBL_DATA: the offline copy.
set -u
cd "$(dirname "$0")/.."
queue=$1
shift
out=${ZOO_OUT:-$HOME/.cache/robustbench_bl/zoo-v2}
data=${RBL_DATA:-$(cd .. && pwd)/shared/data}
log=$HOME/.cache/robustbench_bl/logs/$queue.log
mkdir -p "$out" "$(dirname "$log")"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for name in "$@"; do
    if [ -f "$out/$name.json" ]; then
        echo "$name: done already" >>"$log"
        continue
    fi
    echo "=== $name start $(date)" >>"$log"
    .venv/bin/python -m robustbench_bl.zoo train "$name" --data "$data" --out "$out" >>"$log" 2>&1
    echo "=== $name end rc=$? $(date)" >>"$log"
done
