#!/bin/sh
# Streams "y" lines until killed, after writing "<pid> <pid>" (its pid is its process group) to
# the file QUERY_STRING names (tests only).
printf '%s %s\n' "$$" "$$" > "$QUERY_STRING.tmp"
mv "$QUERY_STRING.tmp" "$QUERY_STRING"
printf 'Content-Type: text/plain\n\n'
exec yes
