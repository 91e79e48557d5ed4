#!/usr/bin/env bash
# Send a file of OTLP JSON lines (callspan's file exporter, CALLSPAN_EXPORTER=file) to any
# OTLP/HTTP receiver: Jaeger, Tempo, an OpenTelemetry Collector. One POST per line, each line
# being one ExportTraceServiceRequest, as OTLP/HTTP with JSON encoding expects.
#   deploy/send-file.sh callspan-spans.jsonl [http://localhost:4318/v1/traces]
set -euo pipefail
file=${1:?usage: $0 FILE.jsonl [OTLP/HTTP traces URL]}
url=${2:-http://localhost:4318/v1/traces}
sent=0
while IFS= read -r line || [ -n "$line" ]; do
  [ -z "${line// }" ] && continue
  printf '%s' "$line" | curl --silent --show-error --fail-with-body \
    -H 'Content-Type: application/json' --data-binary @- "$url" >/dev/null
  sent=$((sent + 1))
done < "$file"
echo "sent $sent requests from $file to $url"
