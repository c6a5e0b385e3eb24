#!/bin/sh
# EXPERIMENT 10 (reverted in the next commit): where knowing the true rates helps. The router
# alone on seeds 1-7 at 1 and 0.5 req/s, with demand trackers that know part of how each trace
# was drawn (references, not policies).
#   sh bench/routing_levers_rates.sh >> bench/results/routing_levers.txt
CELLS="1:1 2:1 3:1 1:0.5 2:0.5 3:0.5 4:1 5:1 6:1 7:1 4:0.5 5:0.5 6:0.5 7:0.5"
run() { echo "== $*"; env "$@" PYTHONPATH=. .venv/bin/python bench/routing_levers_rates.py $CELLS; }
echo "# experiment 10 (commit of bench/routing_levers_rates.sh): where knowing the true rates helps"
run MF_RATES=counts         # the policy as committed: the router's decayed request counts
run MF_RATES=true           # the rates each trace was drawn from (experiment 5's MF_DEMAND=rates)
run MF_RATES=steady         # the Zipf rates at the ranks of the moment, bursts unknown
run MF_RATES=steady+counts  # the larger of those and the router's own counts
run MF_RATES=late:300       # the true rates, the popularity shift learned 300 s late
run MF_RATES=late:900       # ... 900 s late
run MF_RATES=never          # ... never learned
run MF_RATES=ranked:300     # no knowledge: 300 s counts smoothed by a Zipf curve fitted to them by rank
run MF_RATES=ranked:900     # ... 900 s counts
