"""The WSGI entry point, as `django-admin startproject` writes it.

Run from examples/django_project (so that the `mysite` package is importable):
../../.venv/bin/python -m bridges serve mysite/wsgi.py:application --mode wsgi --port 8000
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()
