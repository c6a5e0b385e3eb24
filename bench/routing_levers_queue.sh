#!/bin/sh
# EXPERIMENT 7 (reverted in the next commit): the queue in the hold's gain. The router alone on
# seeds 1-7 at 1 and 0.5 req/s (seeds 4-7 were not used to choose anything).
#   sh bench/routing_levers_queue.sh >> bench/results/routing_levers.txt
CELLS="1:1 2:1 3:1 1:0.5 2:0.5 3:0.5 4:1 5:1 6:1 7:1 4:0.5 5:0.5 6:0.5 7:0.5"
run() { echo "== $*"; env "$@" PYTHONPATH=. .venv/bin/python bench/routing_levers_queue.py $CELLS; }
echo "# experiment 7 (commit of bench/routing_levers_queue.sh): the queue in the hold's gain"
run MF_QN=1000000            # the policy as committed (99d4f21)
run MF_QN=2                  # no hold once another request of the model is queued
run MF_QN=3
run MF_QN=5
run MF_QG=0.0023             # each queued request adds ln 2 / 300 s (what one request adds to the demand)
run MF_QG=0.01
