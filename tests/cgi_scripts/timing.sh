#!/bin/sh
# Appends its start and end times to the file QUERY_STRING names (tests only), half a second apart.
echo "start $(date +%s.%N) $$" >> "$QUERY_STRING"
sleep 0.5
echo "end $(date +%s.%N) $$" >> "$QUERY_STRING"
printf 'Content-Type: text/plain\n\nok\n'
