#!/bin/sh
# EXPERIMENT 9 (reverted in the next commit): what evicting one copy of a replicated model
# costs. The router alone on seeds 1-7 at 1 and 0.5 req/s (seeds 4-7 were not used to choose
# anything).
#   sh bench/routing_levers_replica.sh >> bench/results/routing_levers.txt
CELLS="1:1 2:1 3:1 1:0.5 2:0.5 3:0.5 4:1 5:1 6:1 7:1 4:0.5 5:0.5 6:0.5 7:0.5"
run() { echo "== $*"; env "$@" PYTHONPATH=. .venv/bin/python bench/routing_levers_replica.py $CELLS; }
echo "# experiment 9 (commit of bench/routing_levers_replica.sh): evicting one of several copies"
run MF_REP=1      # the policy as committed (d7dc38d): a victim costs its model's whole demand
run MF_REP=0      # a copy whose model stays loaded elsewhere costs nothing
run MF_REP=0.25
run MF_REP=0.5
