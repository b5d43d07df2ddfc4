"""The user's own preferences: the undo window (the hold on every send from the browser)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from mailer.models import UserPreferences

MAX_HOLD_SECONDS = 600


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = UserPreferences
        fields = ["hold_seconds"]
        labels = {"hold_seconds": "Undo window (seconds)"}
        help_texts = {
            "hold_seconds": "After you press Send, the message waits this long so you can take "
            "it back. 0 sends at once, with no undo.",
        }

    def clean_hold_seconds(self) -> int:
        value = self.cleaned_data["hold_seconds"]
        if value > MAX_HOLD_SECONDS:
            raise forms.ValidationError(
                f"Choose at most {MAX_HOLD_SECONDS} seconds; to send much later, use "
                "“Send later” when you compose."
            )
        return value


@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    prefs = UserPreferences.for_user(request.user)
    form = PreferencesForm(request.POST or None, instance=prefs)
    if request.method == "POST" and form.is_valid():
        form.save()
        hold = form.cleaned_data["hold_seconds"]
        messages.success(request, f"Saved: you can undo a send for {hold} seconds." if hold
                         else "Saved: messages go at once, with no undo.")
        return redirect("preferences")
    return render(request, "webui/preferences.html", {"form": form},
                  status=400 if form.errors else 200)
