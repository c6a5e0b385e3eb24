#!/bin/sh
# EXPERIMENT 6 (reverted in the next commit): a protected core. The models that give the most
# long-memory demand per GB, up to the fleet's VRAM less a scratch reserve (greedy knapsack,
# recomputed every 5 s), are evicted for a model outside the core only at MF_CORE_P + 1 times
# their demand (and outside-core victims cost MF_CORE_EPS x theirs for a core model's load).
# The router alone on seeds 1-7 at 1 and 0.5 req/s (seeds 4-7 were not used to choose).
#   sh bench/routing_levers_core.sh >> bench/results/routing_levers.txt
CELLS="1:1 2:1 3:1 1:0.5 2:0.5 3:0.5 4:1 5:1 6:1 7:1 4:0.5 5:0.5 6:0.5 7:0.5"
run() { echo "== $*"; env "$@" PYTHONPATH=. .venv/bin/python bench/routing_levers_core.py $CELLS; }
echo "# experiment 6 (commit of bench/routing_levers_core.sh): a protected core"
run MF_CORE_P=0                                  # the policy as committed (1182e4f)
run MF_CORE_P=1000 MF_CORE_R=66                  # core: 1200 s demand, 66 GB scratch, evicted only when nothing else frees room
run MF_CORE_P=1000 MF_CORE_R=66 MF_CORE_HL=600
run MF_CORE_P=1000 MF_CORE_R=66 MF_CORE_HL=2400
run MF_CORE_P=1000 MF_CORE_R=45
run MF_CORE_P=1000 MF_CORE_R=90
run MF_CORE_P=1 MF_CORE_R=66                     # core victims cost 2x
run MF_CORE_P=10 MF_CORE_R=66                    # core victims cost 11x
run MF_CORE_P=1000 MF_CORE_R=66 MF_CORE_EPS=0.5  # and outside-core victims half for a core model's load
# references: the core drawn from the rates the trace was drawn from; and with no time
run MF_CORE_SRC=rates MF_CORE_P=1000 MF_CORE_R=66
run MF_CORE_SRC=rates MF_CORE_P=1000 MF_CORE_R=66 MF_DEMAND=rates
run MF_HW=instant MF_CORE_P=0
run MF_HW=instant MF_CORE_SRC=rates MF_CORE_P=1000 MF_CORE_R=66 MF_DEMAND=rates
run MF_HW=instant MF_DEMAND=rates MF_CORE_P=0
