"""Settings for the example project: no database, no templates, no static files."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
ASGI_APPLICATION = "mysite.asgi.application"

DATABASES: dict[str, dict[str, str]] = {}  # The views need no database.
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Behind a proxy that sets X-Forwarded-Proto, also set SECURE_PROXY_SSL_HEADER; the bridges
# option --proxy-headers already gives Django the client's scheme and address in ASGI mode.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
