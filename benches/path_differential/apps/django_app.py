"""Django app for the path differential, in one file: settings as `startproject` writes them
(minus what needs a database), `path("signup", ...)` and `path("signup/<path:rest>", ...)`
routes, APPEND_SLASH left at its default.

usage: python3 django_app.py PORT   (Debian's python3-django; `runserver --noreload` on 127.0.0.1)
"""
import json
import sys

from django.conf import settings

settings.configure(
    DEBUG=False,  # production behaviour: handler404 answers, APPEND_SLASH redirects POSTs
    ALLOWED_HOSTS=["*"],  # the host checks want to see every Host the app is given
    SECRET_KEY="path-differential-not-secret",
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",  # APPEND_SLASH lives here
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)

from django.http import HttpResponse  # noqa: E402  (needs settings first)
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def echo(request, route, status=200):
    body = {
        "app": "django",
        "route": route,
        "path": request.path_info,  # what the resolver matched against
        "host_header": request.META.get("HTTP_HOST"),
        "fw_host": request.get_host(),
        "x_forwarded_for": request.META.get("HTTP_X_FORWARDED_FOR"),
        "forwarded": request.META.get("HTTP_FORWARDED"),
        "x_real_ip": request.META.get("HTTP_X_REAL_IP"),
        "x_geo_client_ip": request.META.get("HTTP_X_GEO_CLIENT_IP"),
        "x_forwarded_host": request.META.get("HTTP_X_FORWARDED_HOST"),
        "fw_remote_ip": request.META.get("REMOTE_ADDR"),
    }
    r = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    r["X-Bench-App"] = "django"
    return r


# An API endpoint takes POSTs without a CSRF token, as such views are written.
@csrf_exempt
def signup(request, rest=None):
    return echo(request, "signup")


@csrf_exempt
def accounts(request, rest=None):
    return echo(request, "accounts")


def not_found(request, exception=None):
    # No catch-all pattern: it would hide APPEND_SLASH, which only acts when nothing matches.
    return echo(request, "other", 404)


# The protected actions and everything below them (geogate's rule is a segment prefix):
# `<path:>` matches one or more characters, slashes included.
urlpatterns = [
    path("signup", signup),
    path("signup/<path:rest>", signup),
    path("api/v1/accounts", accounts),
    path("api/v1/accounts/<path:rest>", accounts),
]
handler404 = not_found

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line([sys.argv[0], "runserver", "--noreload", f"127.0.0.1:{sys.argv[1]}"])
