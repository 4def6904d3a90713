"""Naming a client and moving it to a group from the clients page."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE
from django.core.exceptions import ValidationError
from django.db import transaction

from dnsengine.models import Client, ClientGroup
from dnsengine.services.admin_log import log_change


def client_assign(
    *, user, name: str, group: ClientGroup, ip: str | None = None, client: Client | None = None
) -> Client:
    """Give a client its name and group in one change: `client` (any identifier), or the Client row of `ip`.

    A seen client without a Client row gets one, recognised by `ip`. Raises
    ValidationError (the model's checks) for an empty name or a bad address; the
    save bumps the config generation (dnsengine.signals), so engines pick the new
    name and group up within the reload interval.
    """
    name = name.strip()
    if not name:
        raise ValidationError("give the client a name")
    if client is None and not ip:
        raise ValidationError("say which client: its IP address")
    with transaction.atomic():
        if client is None:
            client = Client.objects.select_for_update().filter(ip=ip).first()
        created = client is None
        if created:
            client = Client(ip=ip)
        before = (client.name, client.group_id)
        client.name = name
        client.group = group
        client.full_clean()
        if not created and before == (client.name, client.group_id):
            return client
        client.save()
        if created:
            log_change(user, client, ADDITION, f"Named {name!r} in group {group.name!r} from the clients page")
        else:
            log_change(user, client, CHANGE, f"Named {name!r} in group {group.name!r} from the clients page")
    return client
