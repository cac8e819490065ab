#!/usr/bin/env bash
# Mutation testing of the algorithm code: plugins/aa-uda and plugins/aa-ssl (the losses live there).
#
#   bash benchmarks/mutation.sh            # mutmut over both packages, then the issue's named mutants
#   AA_MUTATION_DIR=/tmp/m bash benchmarks/mutation.sh   # keep the work folder (mutmut resumes there)
#
# mutmut 3 (pip install -e '.[test]') copies the packages into a work folder outside the
# repository, mutates every function body there one change at a time, and runs the tests that
# reach the mutated function: tests/test_algorithm_maths.py (each algorithm's train_step against
# its maths written out) and the algorithms' own unit tests. It forks one worker per mutant from a
# process that has imported torch once; one worker at a time (the machine is shared). The score is
# killed / (killed + survived + timed out), over the mutants some test reaches. The mutants that
# survive are listed; benchmarks/mutation-survivors.md says why each one changes no maths.
#
# Then the issue's named mutants (semantic changes mutmut's operators do not make: a sign, a
# moved loss, a dropped detach, ...) are applied one by one to a copy and each must fail
# tests/test_algorithm_maths.py.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${AA_MUTATION_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/aa-mutation.XXXXXX")}
tests=(tests/test_algorithm_maths.py tests/test_dann.py tests/test_mcd.py tests/test_symnets.py
       tests/test_cdtrans.py tests/test_fixmatch.py tests/test_mixmatch.py)
python -c "import mutmut" 2>/dev/null || { echo "mutation.sh: mutmut is not installed; run pip install -e '.[test]'" >&2; exit 2; }

mkdir -p "$work/tests"
# a fresh copy of the code; mutmut keeps its results in $work/mutants and re-runs only what changed
rm -rf "$work/aa_uda" "$work/aa_ssl"
cp -r "$repo/plugins/aa-uda/aa_uda" "$repo/plugins/aa-ssl/aa_ssl" "$work/"
for t in "${tests[@]}"; do cp "$repo/$t" "$work/tests/"; done
cp "$repo/tests/conftest.py" "$repo/tests/forkserver.py" "$work/tests/"  # conftest imports forkserver
find "$work" -name __pycache__ -prune -exec rm -rf {} +
cat > "$work/setup.cfg" <<EOF
[mutmut]
source_paths =
    aa_uda
    aa_ssl
pytest_add_cli_args_test_selection =
$(printf '    %s\n' "${tests[@]}")
pytest_add_cli_args =
    -p
    no:cacheprovider
    -x
    -q
EOF

cd "$work"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 AA_CACHE=${AA_CACHE:-/tmp/aa-cache}
python -m mutmut run --max-children 1 > mutmut-run.log 2>&1 || { tail -40 mutmut-run.log; exit 1; }
python -m mutmut export-cicd-stats > /dev/null
python -m mutmut results > survivors.txt || true
python - <<'EOF'
import json
s = json.load(open("mutants/mutmut-cicd-stats.json"))
reached = s["killed"] + s["survived"] + s["timeout"] + s["suspicious"]
print(f"mutants {s['total']}: killed {s['killed']}, survived {s['survived']}, timed out {s['timeout']}, "
      f"suspicious {s['suspicious']}, no test reaches {s['no_tests']}, skipped {s['skipped']}")
print(f"score: {(s['killed'] + s['timeout']) / max(reached, 1):.1%} killed (of the {reached} mutants a test reaches)")
EOF
echo "survivors ($work/survivors.txt; 'python -m mutmut show NAME' in $work shows one):"
sed 's/^/  /' survivors.txt

# ---------------------------------------------------------------------------- named mutants
# each: file, the text to replace, its replacement; the tests must fail on every one
named=(
  "aa_uda/mcd.py|- self.options.trade_off * gap)|+ self.options.trade_off * gap)|MCD step B: minimise the discrepancy instead of maximising it"
  "aa_uda/mcd.py|self.update_g(self.options.trade_off * gap)|self.update_g(-self.options.trade_off * gap)|MCD step C: maximise the discrepancy instead of minimising it"
  "aa_uda/cdtrans.py|target = F.cross_entropy(o_t, batch.y_t)|target = F.cross_entropy(o_st, batch.y_t)|CDTrans: pseudo-label loss on the cross branch"
  "aa_uda/cdtrans.py|target = F.cross_entropy(o_t, batch.y_t)|target = F.cross_entropy(o_s, batch.y_t)|CDTrans: pseudo-label loss on the source branch"
  "aa_uda/cdtrans.py|distilled = distillation(o_st, o_t)|distilled = distillation(o_st.detach(), o_t)|CDTrans: teacher detached"
  "aa_uda/symnets.py|o_s, o_t = self.fc(f_s.detach()), self.fc(f_t.detach())|o_s, o_t = self.fc(f_s), self.fc(f_t.detach())|SymNets: source features not detached for L_C"
  "aa_uda/symnets.py|o_s, o_t = self.fc(f_s.detach()), self.fc(f_t.detach())|o_s, o_t = self.fc(f_s.detach()), self.fc(f_t)|SymNets: target features not detached for L_C"
  "aa_uda/symnets.py|w, b = fc.weight.detach(), fc.bias.detach()|w, b = fc.weight, fc.bias.detach()|SymNets: classifier weight not detached for L_G"
  "aa_uda/symnets.py|f_s, f_t = self.g(batch.x_s), self.g(batch.x_t)|f_s, f_t = self.g(torch.cat([batch.x_s, batch.x_t])).split(len(batch.x_s))|SymNets: one batch norm over both domains"
  "aa_uda/dann.py|coefficient = sigmoid_ramp(progress(step, self.context.total_steps))|coefficient = 1.0|DANN: constant lambda"
  "aa_uda/dann.py|adversarial = self.adversarial(f_s, f_t, coefficient)|adversarial = self.adversarial(f_s, f_t, 2 * coefficient)|DANN: lambda doubled"
  "aa_ssl/mixmatch.py|average = torch.stack([self.classifier(u).softmax(dim=1) for u in views]).mean(dim=0)\n        return sharpen(average, self.options.temperature)|average = torch.stack([sharpen(self.classifier(u).softmax(dim=1), self.options.temperature) for u in views]).mean(dim=0)\n        return average|MixMatch: mean(sharpen) instead of sharpen(mean)"
  "aa_ssl/mixmatch.py|        with kept_statistics(self.classifier):\n|        if True:\n|MixMatch: guessing passes update batch norm statistics"
  "aa_ssl/fixmatch.py|mask = (confidence >= self.threshold).float()|mask = (confidence >= self.threshold).float() * 0 + 1|FixMatch: no confidence mask"
  "aa_ssl/fixmatch.py|return self.options.lambda_u * unlabelled, {|return unlabelled, {|FixMatch: lambda_u ignored"
  "aa_uda/shot.py|return entropy + (mean * torch.log(mean + EPSILON)).sum()|return entropy - (mean * torch.log(mean + EPSILON)).sum()|SHOT: diversity term's sign flipped"
  "aa_uda/shot.py|        classifier.head.requires_grad_(False)  # the source hypothesis stays as it is|        pass|SHOT: the head trained"
  "aa_uda/adamatch.py|logits = mix * alone + (1 - mix) * joint[: len(source)]|logits = joint[: len(source)]|AdaMatch: no random logit interpolation"
  "aa_uda/adamatch.py|threshold = self.options.tau * p_source.max(dim=1).values.mean()|threshold = self.options.tau|AdaMatch: an absolute threshold"
  "aa_uda/adamatch.py|confidence, pseudo = aligned.max(dim=1)|confidence, pseudo = p_target.max(dim=1)|AdaMatch: no distribution alignment"
  "aa_ssl/freematch.py|class_thresholds = self.tau * self.p_model / self.p_model.max()|class_thresholds = self.tau * torch.ones_like(self.p_model)|FreeMatch: one global threshold, not class-wise"
  "aa_ssl/freematch.py|return (running * torch.log(batch + 1e-12)).sum()|return -(running * torch.log(batch + 1e-12)).sum()|FreeMatch: fairness sign flipped"
  "aa_ssl/freematch.py|passed = logits_strong[mask.bool()]|passed = logits_strong|FreeMatch: fairness over ungated images"
  "aa_ssl/softmatch.py|below = torch.clamp(confidence - self.mu, max=0.0)|below = confidence - self.mu|SoftMatch: the Gaussian not truncated"
  "aa_ssl/softmatch.py|probabilities.argmax(dim=1), reduction|self.alignment.align(probabilities).argmax(dim=1), reduction|SoftMatch: pseudo-labels from aligned predictions"
)
echo "named mutants (each must fail a test):"
failed_to_kill=0
for entry in "${named[@]}"; do
  IFS='|' read -r file old new what <<< "$entry"
  copy=$(mktemp -d "${TMPDIR:-/tmp}/aa-named.XXXXXX")
  cp -r "$work/aa_uda" "$work/aa_ssl" "$copy/"
  OLD="$old" NEW="$new" python - "$copy/$file" <<'EOF'
import os, sys
path, old, new = sys.argv[1], os.environ["OLD"].replace("\\n", "\n"), os.environ["NEW"].replace("\\n", "\n")
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"named mutant: {old!r} is not in {path} exactly once; update benchmarks/mutation.sh")
open(path, "w").write(text.replace(old, new))
EOF
  if (cd "$repo" && PYTHONPATH="$copy" python -m pytest -q -x -p no:cacheprovider tests/test_algorithm_maths.py > "$copy/pytest.log" 2>&1); then
    echo "  SURVIVED  $what"; failed_to_kill=1
  else
    echo "  killed    $what"
  fi
  rm -rf "$copy"
done
exit $failed_to_kill
