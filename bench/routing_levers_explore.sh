#!/bin/sh
# EXPERIMENT (reverted in the next commit): every lever measured for docs/benchmarks.md, one after
# the other, the router alone on seeds 1-3 at 1 and 0.5 req/s.
#   sh bench/routing_levers_explore.sh > bench/results/routing_levers.txt
run() { echo "== $*"; env "$@" PYTHONPATH=. .venv/bin/python bench/routing_levers_explore.py 1:1 2:1 3:1 1:0.5 2:0.5 3:0.5 -- $KNOBS; }
KNOBS= run MF_X=short                       # the policy as committed (baseline)
KNOBS=demand_half_life_s=900 run MF_X=short  # longer demand memory, everywhere
KNOBS=demand_half_life_s=1800 run MF_X=short
KNOBS= run MF_X=long MF_H=1800              # victims and hold valued by a 1800 s-half-life frequency
KNOBS= run MF_X=max MF_H=1800               # max(300 s demand, 1800 s frequency)
KNOBS= run MF_X=sum MF_H=1800               # demand + frequency
KNOBS= run MF_X=min MF_H=1800               # min: a one-hit model is a cheap victim (probation)
KNOBS= run MF_X=min MF_H=7200
KNOBS=max_hold_s=30 run MF_CAP=2            # hold up to 2x the model's load time
KNOBS=max_hold_s=60 run MF_CAP=2
KNOBS=max_hold_s=30 run MF_CAP=100          # hold not capped by the load time
KNOBS=max_hold_s=60 run MF_CAP=100
KNOBS= run MF_FIT=best                      # load-fits: tightest host of the smallest size
KNOBS= run MF_FIT=bestany                   # load-fits: tightest host of any size
KNOBS= run MF_LEFT=1                        # load-evict ties: the host freeing most MB
KNOBS= run MF_HOLDANY=1                     # hold whenever victims are hotter than the request
KNOBS= run MF_HOLDANY=1 MF_X=sum MF_H=1800
KNOBS=max_hold_s=15 run MF_HOLDANY=1
# added in the second experiment commit: LRU-K rate (K / time since the K-th latest request)
KNOBS= run MF_X=lru2
KNOBS= run MF_X=lru3
KNOBS= run MF_X=lru5
KNOBS= run MF_HOLDLATER=1   # hold whenever a busy host would be cheaper once idle (no own-demand test)
KNOBS= run MF_CONCAVE=300   # victim cost = chance of a request within T s, 1 - exp(-rate T), T = MF_CONCAVE
KNOBS= run MF_CONCAVE=1200
