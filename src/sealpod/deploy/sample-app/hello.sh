#!/bin/sh
# The sealpod demo's sample workload.
echo "$GREETING"
echo "I am uid $(busybox id -u), pid $$, on host $(busybox hostname), in $(busybox pwd)"
echo "secret: $(busybox cat /app/message.txt)"
# the image's Env held only a sealed reference (sealed.<JWS>); the enclave unsealed it through the KBS
[ -n "$DB_PASSWORD" ] && echo "sealed env DB_PASSWORD, unsealed: $DB_PASSWORD"
# confidential-data-hub's resource API, on this workload's own loopback, answered from the KBS
token=$(busybox wget -q -O - http://127.0.0.1:8006/cdh/resource/default/demo/api-token 2>/dev/null) &&
    echo "from the KBS over the CDH API: $token"
exit 0
