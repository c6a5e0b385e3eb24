#!/bin/sh
# EXPERIMENT 8 (reverted in the next commit): idle-time preloads. The router alone on seeds
# 1-7 at 1 and 0.5 req/s (seeds 4-7 were not used to choose anything).
#   sh bench/routing_levers_preload.sh >> bench/results/routing_levers.txt
CELLS="1:1 2:1 3:1 1:0.5 2:0.5 3:0.5 4:1 5:1 6:1 7:1 4:0.5 5:0.5 6:0.5 7:0.5"
run() { echo "== $*"; env "$@" PYTHONPATH=. .venv/bin/python bench/routing_levers_preload.py $CELLS; }
echo "# experiment 8 (commit of bench/routing_levers_preload.sh): idle-time preloads"
run MF_PRE_K=inf                              # the policy as committed (d7dc38d)
run MF_PRE_FREE=1 MF_PRE_K=1                  # into free VRAM only, any demand
run MF_PRE_FREE=1 MF_PRE_K=1 MF_PRE_MIN=0.005 # same, models with >= 0.005 req/s
run MF_PRE_FREE=1 MF_PRE_K=1 MF_PRE_MIN=0.015 # same, >= 0.015 req/s
run MF_PRE_FREE=1 MF_PRE_K=1 MF_PRE_TOP=1     # only the most-demanded absent model
run MF_PRE_K=3                                # evicting where victims' demand < 1/3 of the model's
run MF_PRE_K=10                               # < 1/10
