from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import control

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("test/stats", control.stats),
    path("test/mode", control.mode),
    path("test/revoke", control.revoke),
]
