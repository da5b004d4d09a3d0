"""The ASGI entry point, as `django-admin startproject` writes it.

Run from examples/django_project (so that the `mysite` package is importable):
../../.venv/bin/python -m bridges serve mysite/asgi.py:application --mode asgi --port 8000
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()
