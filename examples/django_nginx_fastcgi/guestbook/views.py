"""A guestbook: a page with a form, the view the form posts to, and what the request looked like."""

import os

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

ENTRIES: list[tuple[str, str]] = []  # In memory: one list per process (start it with one worker).


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    entries = format_html_join("\n", "<li><b>{}</b>: {}</li>", ENTRIES)
    return HttpResponse(
        format_html(
            "<!doctype html>\n<title>Guestbook</title>\n"
            '<link rel="stylesheet" href="{}">\n'
            "<h1>Guestbook</h1>\n<ul>\n{}\n</ul>\n"
            '<form method="post" action="/sign/">\n'
            '<input name="name" placeholder="name"> <input name="message" placeholder="message">\n'
            "<button>Sign</button>\n</form>\n",
            static("guestbook.css"),
            entries,
        )
    )


@csrf_exempt  # A form without a CSRF token, so that curl can post it too.
@require_POST
def sign(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    message = request.POST.get("message", "").strip()
    if not name or not message:
        return HttpResponse("name and message are required\n", status=400, content_type="text/plain")
    ENTRIES.append((name, message))
    return HttpResponseRedirect("/", status=303)  # Back to the page, as a GET.


def info(request: HttpRequest) -> JsonResponse:
    """What Django received from nginx, through bridges' FastCGI host."""
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "query": request.META.get("QUERY_STRING", ""),
            "host": request.get_host(),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "scheme": request.scheme,
            "absolute_uri": request.build_absolute_uri(),
            "entries": len(ENTRIES),
            "pid": os.getpid(),
        }
    )
