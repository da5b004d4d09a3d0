from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("sign/", views.sign),
    path("info/", views.info),
]
