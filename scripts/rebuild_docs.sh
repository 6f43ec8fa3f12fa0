#!/usr/bin/env bash
# Remakes, from what the repository keeps (each run's records in docs/results/**/runs/, the eval
# JSONs, the rank_sources JSONs), every published table and plot under docs/results/ that can be
# remade, with the --mode=report invocation that made it (named in the README beside it or in the
# comparison script that wrote it). For each published table that cannot be remade it prints one
# line saying which and why (its run directories' records were not kept; the README beside it
# says so). At the end it names every remade file that differs from the committed one: a table
# published before a later change of the report (a column added since) comes out in today's form.
# Usage: scripts/rebuild_docs.sh                  (in place; `git diff docs/results` shows what
#                                                  changed: nothing, when the report is unchanged)
#        OUT=/tmp/rebuilt scripts/rebuild_docs.sh (the same files under OUT/docs/results/...)
# Env: PYTHON (.venv/bin/python), OUT (empty: in place).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${OUT:-}
R=docs/results
E=$R/experts
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
differs=()

report() {  # published dir, then the report's flags; with only=FILE set, just that file is kept
  local dir=$1 dest=$1 target file name
  shift
  [ -z "$out" ] || dest="$out/$dir"
  mkdir -p "$dest"
  target=$dest
  [ -z "${only:-}" ] || target=$(mktemp -d)
  touch "$marker"
  "$python" -m amn_tf.main --mode=report --report_dir="$target" "$@" > /dev/null
  if [ -n "${only:-}" ]; then
    mv "$target/$only" "$dest/"
    rm -rf "$target"
  fi
  for file in $(find "$dest" -maxdepth 1 -type f -newer "$marker" \( -name '*.md' -o -name '*.png' \) | sort); do
    name=$dir/$(basename "$file")
    [ "$name" != "${later:-}" ] || continue  # a later step remakes this one from more inputs
    echo "remade: $name"
    git show "HEAD:$name" 2> /dev/null | cmp -s - "$file" || differs+=("$name")
  done
}

cannot() {  # published table (and its plot), the run directories it was made from
  echo "not remade: $1: no kept record (made from $2 before scripts/keep_records.sh, 2026-12-04;" \
    "those run directories are not in the repository)"
}

list() {  # paths -> comma list
  local IFS=,
  echo "$*"
}

experts_of() {  # games -> their expert and random eval JSONs, as scripts/amn_compare.sh gives them
  local game who found=()
  for game in "$@"; do
    for who in expert random; do found+=("$E/$game-$who.json"); done
  done
  list "${found[@]}"
}

# ---------------------------------------------------------------- Table 2 (transfer)
for game in Breakout RoadRunner; do  # scripts/transfer_compare.sh's report step, as the READMEs give it
  D=$R/transfer-$game
  # shellcheck disable=SC2012  # ls sorts its operands together: the order the tables were made in
  report "$D" --report_blocks=6 --report_runs="$(ls -d "$D"/runs/* | paste -sd,)" \
    --report_evals="$(ls "$D"/*-seed?-eval.json "$D"/random-play-eval.json | paste -sd,)" \
    --report_rankings="$D/rank_sources-amn-policy.json,$D/rank_sources-amn-feature.json"
done
# The authors' DQN recipe (Table 2's first column, 4M frames) in blocks of 1M frames, with the
# AMN-policy and AMN-feature rankings: Breakout's from the ablation's rung-3 runs, RoadRunner's from its own folder.
paper_table2() {  # game, published dir, run dirs (comma list), eval JSONs (comma list)
  report "$2" --report_blocks=4 --report_runs="$3" --report_evals="$4,$R/transfer-$1/random-play-eval.json" \
    --report_rankings="$R/transfer-$1/rank_sources-amn-policy.json,$R/transfer-$1/rank_sources-amn-feature.json"
}
BA=$R/transfer-Breakout/ablation RRP=$R/transfer-RoadRunner/paper
# shellcheck disable=SC2012
paper_table2 Breakout "$R/transfer-Breakout/paper" "$(ls -d "$BA"/runs/transfer-Breakout-paper-* | paste -sd,)" \
  "$(ls "$BA"/paper-*-seed?-eval.json | paste -sd,)"
# shellcheck disable=SC2012
paper_table2 RoadRunner "$RRP" "$(ls -d "$RRP"/runs/* | paste -sd,)" "$(ls "$RRP"/*-seed?-eval.json | paste -sd,)"

# ---------------------------------------------------------------- the transfer ablation (Breakout)
A=$R/transfer-Breakout/ablation  # every kept Breakout transfer run, one row per setting
# shellcheck disable=SC2012
report "$A" --report_ablation --report_runs="$(ls -d "$R"/transfer-Breakout/runs/* "$A"/runs/* | paste -sd,)" \
  --report_evals="$(ls "$R"/transfer-Breakout/*-seed?-eval.json "$R"/transfer-Breakout/random-play-eval.json "$A"/*-eval.json | paste -sd,)"

# the rung-2 source AMN (tau 1): its own test plays
report "$A/amn-tau1" --report_runs="$A/amn-tau1/runs/amn-feature-tau1"
# the rung-4 source AMN (seven experts): its own test plays
report "$A/amn7" --report_runs="$A/amn7/runs/amn7-feature" --report_evals="$A/amn7/amn7-feature-eval.json,$(
  experts_of Boxing CrazyClimber DemonAttack Enduro Pong Seaquest SpaceInvaders)"

T=$R/transfer-SpaceInvaders
cannot "$T/table2.md and transfer_curves.png" "runs/transfer-SpaceInvaders-{random,amn-cpu-policy,amn-cpu}-seed{0,1}"
cannot "$T/1.2M/table2.md and transfer_curves.png" "the same random and amn-cpu runs trained on to 1.2M frames"

# ---------------------------------------------------------------- Table 1 (AMN and multitask runs)
table1_of() {  # published dir, its games (comma list), then the kept records of runs that trained experts
  # scripts/amn_compare.sh's report step over the models it kept, then the paper's readout
  # (table1_paper_readout.md) of the same runs beside those expert runs and the experts'
  # fresh-episode evals; made apart, so that table1_saved_models.md keeps the evals it was
  # published with.
  local dir=$1 games=${2//,/ } name game runs=() evals=() fresh=()
  shift 2
  for name in amn-beta0-seed0 amn-beta0-seed1 amn-beta0.01-seed0 amn-beta0.01-seed1 amn-tau0.1-beta0-seed0 mdqn mcdqn; do
    [ -d "$dir/runs/$name" ] || continue
    runs+=("$dir/runs/$name")
    [ ! -f "$dir/$name-eval.json" ] || evals+=("$dir/$name-eval.json")
  done
  # shellcheck disable=SC2086  # the games are words
  later=$dir/table1_paper_readout.md report "$dir" --report_runs="$(list "${runs[@]}")" \
    --report_evals="$(list "${evals[@]}" "$(experts_of $games)")"
  for game in $games; do fresh+=("$R/fresh-episodes/experts-$game-1-fresh-eval.json"); done
  only=table1_paper_readout.md report "$dir" --report_runs="$(list "${runs[@]}" "$@")" \
    --report_evals="$(list "${evals[@]}" "${fresh[@]}")"
}
table1_of "$R/table1/paper-games" Boxing,Breakout,CrazyClimber,Enduro,Pong,Seaquest "$E/enduro/runs/Enduro-seed0"
table1_of "$R/table1/eight-games" Atlantis,Boxing,Breakout,CrazyClimber,Enduro,Pong,Seaquest,SpaceInvaders \
  "$E/atlantis/runs/Atlantis-seed0" "$E/enduro/runs/Enduro-seed0"
# Distillation per minute (scripts/amn_sweep.sh's report step: its settings in its order, each seed)
S=$R/amn-per-minute sweep_runs=()
for name in reference lr2.5e-4 lr5e-4 decay batch32 period2 envs8 expert-actor expert-early; do
  for run in "$S/runs/$name"-seed*; do [ ! -d "$run" ] || sweep_runs+=("$run"); done
done
report "$S" --report_runs="$(list "${sweep_runs[@]}")" --report_per_minute --report_rates="$S/rates.json"
for name in seven-experts eight-experts; do
  report "$R/main-job/$name" --report_runs="$R/main-job/$name/runs/main-job-$name"
done
# The main job's learning rate at its budget: the 2.5e-4 run measured by benchmarks/main_job.py
# (defaults-40k) beside the per-update probes (docs/results/main-job/learning-rate/README.md).
L=$R/main-job/learning-rate
lr_runs=("$R/main-job/defaults-40k/runs/amn-Boxing-Breakout-CrazyClimber-DemonAttack-Enduro-Pong-Seaquest-SpaceInvaders")
lr_evals=("$R/main-job/defaults-40k/main-job-eval.json")
for run in "$L"/runs/*; do lr_runs+=("$run") lr_evals+=("$L/$(basename "$run")-eval.json"); done
report "$L" --report_runs="$(list "${lr_runs[@]}")" \
  --report_evals="$(list "${lr_evals[@]}"),$(experts_of Boxing Breakout CrazyClimber DemonAttack Enduro Pong Seaquest SpaceInvaders)"
# Today's defaults given 15 minutes' worth of agent steps, beside the 48k-step default (its README)
M=$R/main-job
report "$M/defaults-76k-steps" --report_runs="$(list "$M/defaults-48k-thread/runs/amn-Boxing-Breakout-CrazyClimber-DemonAttack-Enduro-Pong-Seaquest-SpaceInvaders" "$M/defaults-76k-steps/runs/mainjob-76k")" \
  --report_evals="$(list "$M/defaults-48k-thread/main-job-eval.json" "$M/defaults-76k-steps/main-job-eval.json"),$(
  experts_of Boxing Breakout CrazyClimber DemonAttack Enduro Pong Seaquest SpaceInvaders)"
# The main job on the paper's eight source games (Atlantis in, DemonAttack out), the 48k-step default
report "$M/paper-eight-48k" \
  --report_runs="$M/paper-eight-48k/runs/amn-Atlantis-Boxing-Breakout-CrazyClimber-Enduro-Pong-Seaquest-SpaceInvaders" \
  --report_evals="$M/paper-eight-48k/main-job-eval.json,$(experts_of Atlantis Boxing Breakout CrazyClimber Enduro Pong Seaquest SpaceInvaders)"
# The SavedModel tables need only eval JSONs (docs/results/table1/README.md, five-games/README.md).
report "$R/table1" --report_evals="$(experts_of Boxing CrazyClimber DemonAttack Seaquest),$R/table1/amn-cpu-eval.json"
report "$R/table1/five-games" --report_evals="$(experts_of Boxing CrazyClimber DemonAttack Pong Seaquest),$(
  list "$R/table1/five-games/amn-feature-eval.json" "$R/table1/five-games/amn-policy-eval.json")"
cannot "$R/table1/table1.md and amn_curves.png" "runs/{amn-cpu-tau0.1,amn-cpu-tau0.01,amn-default,mdqn-cpu,mcdqn-cpu}"
cannot "$R/table1/five-games/table1.md and amn_curves.png" "runs/amn5/{feature,policy}-seed0"
cannot "$R/amn-tau/table1.md and amn_curves.png" "runs/amn-Boxing and runs/amn-Boxing-tau0.1"
cannot "$R/main-job/table1.md and amn_curves.png" "the three main-job runs of 2026-11-27, each a fresh clone's runs/"
for name in five-experts five-experts-beta0 six-experts-beta0; do
  cannot "$R/main-job/$name/table1.md and amn_curves.png" "the $name main-job run (a fresh clone's runs/)"
done

# ---------------------------------------------------------------- expert DQN runs and recipes
report "$E/enduro" --report_runs="$E/enduro/runs/Enduro-seed0" --report_evals="$E/Enduro-expert.json"
report "$E/atlantis" --report_runs="$E/atlantis/runs/Atlantis-seed0" --report_evals="$E/Atlantis-expert.json"
report "$E/SpaceInvaders-replay1M-dueling" \
  --report_runs="$E/SpaceInvaders-replay1M-dueling/runs/SpaceInvaders-replay1M-dueling-seed0"
X=$E/recipes-Pong-2.4M  # scripts/recipe_compare.sh's report step: seeds, then variants
report "$X" --report_reach_scores=12,15 \
  --report_runs="$(list "$X"/runs/Pong-{fast,cpu}-seed0 "$X"/runs/Pong-{fast,cpu}-seed1)" \
  --report_evals="$(list "$X"/Pong-{fast,cpu}-seed0-eval.json "$X"/Pong-{fast,cpu}-seed1-eval.json)"
X=$E/recipes-Pong-5M  # docs/results/experts/recipes.md (the fast recipe's two seeds)
report "$X" --report_reach_scores=12,15 --report_runs="$(list "$X"/runs/Pong-fast-seed{0,1})" \
  --report_evals="$(list "$X"/Pong-fast-seed{0,1}-eval.json)"
Y=$E/recipes-Pong-fast-7M  # seed 0 to 5M beside seed 1 to 7M
report "$Y" --report_reach_scores=12,15 \
  --report_runs="$X/runs/Pong-fast-seed0,$Y/runs/Pong-fast-seed1" \
  --report_evals="$X/Pong-fast-seed0-eval.json,$Y/Pong-fast-seed1-eval.json"
cannot "$E/experts.md and expert_curves.png" "runs/experts/{Boxing,Seaquest,DemonAttack}"
cannot "$E/fast-recipe/experts.md and expert_curves.png" "runs/experts-fast/{Pong,Breakout,SpaceInvaders}-seed0"

# ---------------------------------------------------------------- fresh episodes (shipped models)
X=$R/fresh-episodes  # every shipped model re-scored on --mode=eval's stream of --seed=100
report "$X" --report_evals="$(list "$X"/experts-{Boxing,Breakout,CrazyClimber,Enduro,Pong,Seaquest}-1-fresh-eval.json \
  "$E"/{Boxing,Breakout,CrazyClimber,Enduro,Pong,Seaquest}-random.json "$X"/amn-amn-table1-1-fresh-eval.json)"
fresh=()
for game in Atlantis Boxing Breakout CrazyClimber DemonAttack Enduro Pong Seaquest SpaceInvaders; do
  fresh+=("experts/$game/1=$E/$game-expert.json=$X/experts-$game-1-fresh-eval.json")
done
fresh+=("amn/amn-table1/1=$R/table1/paper-games/1.2M/amn-beta0.01-seed1-eval.json=$X/amn-amn-table1-1-fresh-eval.json"
        "amn/amn-policy/1=$R/table1/five-games/amn-policy-eval.json=$X/amn-amn-policy-1-fresh-eval.json"
        "amn/amn-feature/1=$R/table1/five-games/amn-feature-eval.json=$X/amn-amn-feature-1-fresh-eval.json"
        "transfer/Breakout-amn-policy/1=$R/transfer-Breakout/amn-policy-seed1-eval.json=$X/transfer-Breakout-amn-policy-1-fresh-eval.json"
        "transfer/Breakout-amn-feature-tau1/1=$R/transfer-Breakout/ablation/amn-feature-tau1-seed1-eval.json=$X/transfer-Breakout-amn-feature-tau1-1-fresh-eval.json")
dest=$X; [ -z "$out" ] || dest="$out/$X"
mkdir -p "$dest"
"$python" scripts/fresh_episodes.py "${fresh[@]}" > "$dest/fresh_vs_published.md"
echo "remade: $X/fresh_vs_published.md"
git show "HEAD:$X/fresh_vs_published.md" 2> /dev/null | cmp -s - "$dest/fresh_vs_published.md" \
  || differs+=("$X/fresh_vs_published.md")

for name in ${differs[@]+"${differs[@]}"}; do
  echo "differs from the committed file: $name"
done
