#!/bin/sh
# Streams three lines a second apart, then writes "done" to the file QUERY_STRING names (tests only).
printf 'Content-Type: text/plain\n\n'
echo first
sleep 1
echo second
sleep 1
echo third
if [ -n "$QUERY_STRING" ]; then echo done > "$QUERY_STRING"; fi
