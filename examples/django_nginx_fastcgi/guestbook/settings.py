"""Settings for the guestbook: no database, no templates; nginx serves the static files."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
# nginx passes the client's Host header (Debian's fastcgi_params: without the port).
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "guestbook.urls"
WSGI_APPLICATION = "guestbook.wsgi.application"

DATABASES: dict[str, dict[str, str]] = {}  # The guestbook keeps its entries in memory.
USE_TZ = True

# nginx serves /static/ from STATIC_ROOT; Django only builds the URLs. In a project with apps,
# `manage.py collectstatic` (django.contrib.staticfiles) fills STATIC_ROOT; here it holds one file.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
