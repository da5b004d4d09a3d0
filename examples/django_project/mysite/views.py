"""Two views: a greeting, and a POST echo (CSRF-exempt so that curl can call it)."""

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


def hello(request: HttpRequest) -> HttpResponse:
    interface = "ASGI" if request.META.get("wsgi.version") is None else "WSGI"
    return HttpResponse(f"Hello from Django over {interface}\n", content_type="text/plain")


@csrf_exempt
@require_POST
def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "length": len(request.body),
            "content_type": request.content_type,
            "path": request.path,
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "pid": os.getpid(),
        }
    )
