#!/usr/bin/env bash
# pay.sh - payments-engine benchmarks (built by `make build`): PCI redaction throughput,
# reconciliation of 1 M + 1 M CSV rows (time and peak memory), idempotency overhead per call
# on the SQLite store.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/${BUILD:-build}/bench"
for b in pay_redact_bench pay_recon_bench pay_idem_bench; do
  [ -x "$dir/$b" ] || { echo "pay.sh: $dir/$b not built (run make build)" >&2; exit 1; }
done
echo "keel payments benchmark"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
"$dir/pay_redact_bench"
"$dir/pay_recon_bench"
"$dir/pay_idem_bench"
