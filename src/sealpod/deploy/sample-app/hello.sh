#!/bin/sh
# The sealpod demo's sample workload.
echo "$GREETING"
echo "I am uid $(busybox id -u), pid $$, on host $(busybox hostname), in $(busybox pwd)"
echo "secret: $(busybox cat /app/message.txt)"
