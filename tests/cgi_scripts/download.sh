#!/bin/sh
# Writes QUERY_STRING zero bytes as the body.
printf 'Content-Type: application/octet-stream\n\n'
exec head -c "${QUERY_STRING:-0}" /dev/zero
