#!/usr/bin/env bash
# The shipped weights (ssen_ros/weights/ssen_demo.pt) from nothing but this repository, in one
# command: generate the synthetic rooms, train stage 1 (config/train_demo.yaml: RGB + centred
# xyz, the paper's recipe narrowed for a CPU), then stage 2 (config/train_real.yaml: started from
# stage 1, RGB + height input and the real-map augmentations, then the semantic head re-fit), and
# score the result on the synthetic test rooms. Hours on a 2-core CPU; README "Shipped weights".
# Run after scripts/setup.sh (or scripts/demo.sh) has made .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ssen generate data/rooms/train --split train --count 400
ssen generate data/rooms/val --split val --count 40
ssen generate data/rooms/test --split test --count 100
ssen train config/train_demo.yaml
ssen train config/train_real.yaml --export ssen_ros/weights/ssen_demo.pt
ssen evaluate --data data/rooms/test --limit 100
python -m benchmarks robustness
