#!/usr/bin/env python3
# Reads the whole body slowly (64 KiB, then a short sleep) and says how many bytes it got.
import os
import sys
import time

total = 0
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    total += len(chunk)
    time.sleep(0.001)
sys.stdout.write(f"Content-Type: text/plain\n\nreceived {total} bytes\n")
