#!/usr/bin/env python3
# A CGI script written the old way: os.environ, sys.stdin, print().
import os
import sys

length = int(os.environ.get("CONTENT_LENGTH") or 0)
body = sys.stdin.read(length) if length else ""
print("Content-Type: text/plain; charset=utf-8")
print("X-Old-Style: yes")
print()
print("method=" + os.environ["REQUEST_METHOD"])
print("query=" + os.environ.get("QUERY_STRING", ""))
print("body=" + body.upper())
