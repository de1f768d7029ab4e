# shellcheck shell=bash
# Sourced by the seq demo parts: queue fairseq-generate decodes with uncertainty, then run them all in ONE Python
# process (scripts/proxy_neurips2021/_generate_batch.py: torch and fairseq are imported once, not once per decode).
_decode_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

queue_decode() {  # queue_decode QUEUE DATA_BIN CHECKPOINTS SUBSET RESULTS_DIR (skipped when RESULTS_DIR is complete)
  local queue=$1 data=$2 path=$3 subset=$4 dir=$5
  [[ -f "$dir/generate-$subset.txt" ]] && grep -q "^Generate $subset" "$dir/generate-$subset.txt" && return 0
  rm -rf "$dir"
  printf '%q ' "$data" --user-dir endist_seq --task translation_uncertainty --compute-uncertainty \
    --path "$path" --gen-subset "$subset" --beam 5 --batch-size 200 --max-len-b 30 --cpu \
    --num-workers 0 --results-path "$dir" >> "$queue"
  echo >> "$queue"
}

run_decode_queue() {  # run_decode_queue QUEUE LOG: every queued decode (none queued: nothing to do)
  local queue=$1 log=$2 rc=0
  [[ -f "$queue" ]] || return 0
  python "$_decode_root/scripts/proxy_neurips2021/_generate_batch.py" "$queue" > "$log" 2>&1 || rc=$?
  rm -f "$queue"
  [[ $rc == 0 ]] || { tail -n 20 "$log" >&2; echo "error: fairseq-generate failed (log: $log)" >&2; return 1; }
}
