#!/bin/sh
# Fails: QUERY_STRING "partial" writes half a header line, "headers" headers without the blank line,
# anything else nothing at all; then a message on stderr and exit status 1.
case "$QUERY_STRING" in
    partial) printf 'Content-Type: text/pl' ;;
    headers) printf 'Status: 200 OK\nContent-Type: text/plain\n' ;;
esac
echo "crash.sh: something went wrong" >&2
exit 1
