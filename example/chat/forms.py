from __future__ import annotations

from django import forms

from chat.models import ROOM_NAME_MAX_LENGTH, room_name_validator


class RoomForm(forms.Form):
    """Create or join a room by name."""

    name = forms.CharField(
        max_length=ROOM_NAME_MAX_LENGTH,
        validators=[room_name_validator],
        widget=forms.TextInput(
            attrs={
                "placeholder": "room name, e.g. lobby",
                "pattern": "[A-Za-z0-9_.\\-]{1,80}",
                "autocomplete": "off",
            }
        ),
    )
