"""Rooms get members; existing rooms keep everyone who posted in them; "." and ".." are refused."""

import django.core.validators
from django.conf import settings
from django.db import migrations, models


def authors_become_members(apps, schema_editor):  # type: ignore[no-untyped-def]
    """A room that existed before membership keeps its authors as members."""
    room_model = apps.get_model("chat", "Room")
    message_model = apps.get_model("chat", "Message")
    for room in room_model.objects.all():
        authors = message_model.objects.filter(room=room).values_list("user_id", flat=True)
        room.members.add(*set(authors))


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="members",
            field=models.ManyToManyField(
                blank=True, related_name="chat_rooms", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AlterField(
            model_name="room",
            name="name",
            field=models.CharField(
                max_length=80,
                unique=True,
                validators=[
                    django.core.validators.RegexValidator(
                        "^(?!\\.\\.?(?![A-Za-z0-9_.-]))[A-Za-z0-9_.-]{1,80}\\Z",
                        "Use 1 to 80 letters, digits, dots, dashes or underscores (not . or ..).",
                    )
                ],
            ),
        ),
        migrations.RunPython(authors_become_members, migrations.RunPython.noop),
    ]
