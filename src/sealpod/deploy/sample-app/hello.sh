#!/bin/sh
# The sealpod demo's sample workload.
echo "hello from inside the sealpod image"
echo "secret: $(cat /app/message.txt)"
