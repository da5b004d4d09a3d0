#!/usr/bin/env python3
from bridges import run_cgi
from notes_api import app

raise SystemExit(run_cgi(app))
