#!/bin/sh
# EXPERIMENT 5 (reverted in the next commit): this round's levers and reference runs, the router
# alone on seeds 1-7 at 1 and 0.5 req/s (seeds 4-7 were not used to choose anything).
# The earlier experiments' lines are in their commits (9f1167f, 1838831, 89bb170).
#   sh bench/routing_levers_explore.sh >> bench/results/routing_levers.txt
CELLS="1:1 2:1 3:1 1:0.5 2:0.5 3:0.5 4:1 5:1 6:1 7:1 4:0.5 5:0.5 6:0.5 7:0.5"
run() { echo "== $*"; env "$@" PYTHONPATH=. .venv/bin/python bench/routing_levers_explore.py $CELLS -- $KNOBS; }
KNOBS= run MF_BASELINE=1                 # the policy as committed (baseline, 3a732e0)
# references: the committed rules given something the router cannot have
KNOBS= run MF_DEMAND=rates               # the rates each trace was drawn from
KNOBS= run MF_HW=instant                 # loads and decoding take no time
KNOBS= run MF_HW=instant MF_DEMAND=rates # both
KNOBS= run MF_HW=instant-decode          # decoding takes no time, loads do (no model is ever busy serving)
KNOBS= run MF_HW=instant-load            # loads take no time, decoding does
KNOBS= run MF_HW=load-x4                 # loads 4x faster (8 GB/s)
KNOBS=max_hold_s=0 run MF_HW=load-x4       # same, no hold
KNOBS= run MF_HW=instant MF_FLEET=pooled # one host with all the VRAM, instant: what per-host packing costs
KNOBS= run MF_HW=instant MF_FLEET=pooled MF_DEMAND=rates
# levers
KNOBS= run MF_COSTW=1                    # victim cost = demand x the victim's load time (and the request's, for the hold)
KNOBS= run MF_HOSTPEN=0.5                # eviction on a host larger than the smallest possible costs 1.5x
KNOBS= run MF_HOSTPEN=1
KNOBS= run MF_DRAIN=1                    # wait-capacity drains the victims it waits for (they take no new requests)
KNOBS= run MF_BUDGET=30                  # hold cap: hold + own load <= 30 s (instead of hold <= own load)
KNOBS= run MF_BUDGET=40
KNOBS= run MF_BUDGET=50
KNOBS= run MF_DEMAND=switch:120:900:2    # two-timescale demand: 900 s memory unless the 120 s count departs by 2 sigma
KNOBS= run MF_DEMAND=switch:60:1200:2.5
KNOBS= run MF_HW=load-x4 MF_NOCAP=1      # faster loads, hold not capped by the (now short) load time
