#!/usr/bin/env bash
# Step 5: per setting and teacher size, written under OUT_DIR/tables/<setting>_de<M>/ and printed:
#   tables.md  endist-vision compare (criteria × models, with the corrupted-set rows)
#   paper.md   [BE] Tables 1/2 layout: Model | Acc. | ECE | NLL | c-Acc. | c-ECE | c-NLL
source "$(dirname "$0")/../lib/recipe_common.sh"
source "$(dirname "$0")/_common.sh"
de_compare   # (smoke mode: runs the whole queue of steps 2-5 first)
for s in "${SETTINGS[@]}"; do
  read_setting "$s"
  c="${shift%%=*}"
  for m in $sizes; do
    rows=(--row "DE TEACHER" "eval=$(eval_json "$name" "DE-$m" "$m")" "@c=$c")
    while IFS= read -r st; do rows+=(--row "${st%%|*}" "eval=$(eval_json "$name" "${st%%|*}" "$m")" "@c=$c"); done < <(students_of "$labels")
    step "paper layout: $name, DE-$m"
    python "$(dirname "$0")/../lib/eval_table.py" --title "$TAG $name, teacher DE-$m (c-: mean over ${c} corruptions × severities)" \
      --col "Acc.=eval:test/accuracy:f3" --col "ECE=eval:test/ece:f3" --col "NLL=eval:test/nll:f3" \
      --col "c-Acc.=eval:shift/{c}/mean/accuracy:f3" --col "c-ECE=eval:shift/{c}/mean/ece:f3" --col "c-NLL=eval:shift/{c}/mean/nll:f3" \
      "${rows[@]}" --out "$OUT_DIR/tables/${name}_de$m/paper.md"
  done
done
