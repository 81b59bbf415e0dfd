#!/usr/bin/env bash
# What CI installs before testing: GNU parallel and Chromium for the planning tests (required under
# RECEIPT_SIM_REQUIRE_LIVE=1), valgrind and gungraun's runner for the instruction-count benchmarks.
set -euo pipefail
if ! command -v parallel >/dev/null || ! command -v chromium >/dev/null || ! command -v valgrind >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq parallel chromium valgrind
fi
if [ "$(gungraun-runner --version 2>/dev/null | awk '{print $2}')" != "0.20.0" ]; then
  cargo install gungraun-runner --version 0.20.0 --locked
fi
