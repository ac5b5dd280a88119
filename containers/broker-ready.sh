#!/bin/bash
# Healthy when the broker answers a Kafka ApiVersions request on port 9092, like the apache/kafka image's
# check (kafka-broker-api-versions.sh), with bash alone: request v0 (api key 18, correlation id 0, no
# client id, 10 bytes after the length), then the 4-byte length of a reply must come back within 2 s.
set -euo pipefail
exec 3<>/dev/tcp/127.0.0.1/"${1:-9092}"
printf '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x00\xff\xff' >&3
[ "$(timeout 2 head -c 4 <&3 | wc -c)" = 4 ]
