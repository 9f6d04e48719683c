#!/bin/sh
# Run each check suite; print one closing line with the totals.
# CK_TAP_LOG_FILE_NAME etc. pass through; CK_FORK=no for gdb/valgrind.
pass=0; fail=0
for t in "$@"; do
    if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "unit suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
