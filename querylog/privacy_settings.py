"""The privacy settings in force: the environment wins, else the saved row, else the default.

One ``PrivacyField`` per setting ties the model field to its environment variable,
so the settings page, the engines (``privacy_policy_current``) and the docs read the
same table. Adding a setting is a model field and a row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

from querylog.models import PrivacySettings
from querylog.privacy import PrivacyPolicy, policy_build


@dataclass(frozen=True, slots=True)
class PrivacyField:
    name: str  # PrivacySettings field
    env: str  # the variable (also the django setting) that fixes it


PRIVACY_FIELDS: tuple[PrivacyField, ...] = (
    PrivacyField("level", "GLORYHOLE_PRIVACY_LEVEL"),
    PrivacyField("anonymize_clients", "GLORYHOLE_ANONYMIZE_CLIENTS"),
    PrivacyField("anonymize_v4_prefix", "GLORYHOLE_ANONYMIZE_V4_PREFIX"),
    PrivacyField("anonymize_v6_prefix", "GLORYHOLE_ANONYMIZE_V6_PREFIX"),
    PrivacyField("dont_log_clients", "GLORYHOLE_DONT_LOG_CLIENTS"),
    PrivacyField("dont_log_domains", "GLORYHOLE_DONT_LOG_DOMAINS"),
    PrivacyField("log_blocked_only", "GLORYHOLE_LOG_BLOCKED_ONLY"),
)


def privacy_fixed() -> dict[str, str]:
    """field -> the environment variable that fixes it, for the fields set in the environment."""
    return {f.name: f.env for f in PRIVACY_FIELDS if getattr(settings, f.env, None) is not None}


def privacy_settings_saved(using: str = DEFAULT_DB_ALIAS) -> PrivacySettings:
    """The saved row, or an unsaved one with the defaults."""
    return PrivacySettings.objects.using(using).filter(pk=1).first() or PrivacySettings(pk=1)


def privacy_settings_current(using: str = DEFAULT_DB_ALIAS) -> dict[str, object]:
    """field -> value in force (environment over saved row over default)."""
    row = privacy_settings_saved(using)
    values = {}
    for f in PRIVACY_FIELDS:
        env_value = getattr(settings, f.env, None)
        values[f.name] = env_value if env_value is not None else getattr(row, f.name)
    return values


def privacy_policy_current(using: str = DEFAULT_DB_ALIAS) -> PrivacyPolicy:
    """The policy the engines apply now. A saved value that no longer parses counts as unset."""
    v = privacy_settings_current(using)
    try:
        return policy_build(
            v["level"],
            anonymize=v["anonymize_clients"],
            v4_prefix=v["anonymize_v4_prefix"],
            v6_prefix=v["anonymize_v6_prefix"],
            dont_log_clients=v["dont_log_clients"],
            dont_log_domains=v["dont_log_domains"],
            blocked_only=v["log_blocked_only"],
        )
    except ValueError:
        # The form refuses bad values; only a hand-edited row gets here. Storing more than
        # asked would be the worse mistake, so the level stays and the lists are dropped.
        return PrivacyPolicy(level=v["level"] if v["level"] in (0, 1, 2, 3) else 3)


def privacy_level_current(using: str = DEFAULT_DB_ALIAS) -> int:
    """The level in force, for the pages that say what it hides."""
    return privacy_settings_current(using)["level"]


def privacy_settings_save(values: dict[str, object], using: str = DEFAULT_DB_ALIAS) -> PrivacySettings:
    """Save the fields the environment does not fix; engines pick them up on their next poll."""
    row = privacy_settings_saved(using)
    fixed = privacy_fixed()
    for f in PRIVACY_FIELDS:
        if f.name in values and f.name not in fixed:
            setattr(row, f.name, values[f.name])
    row.save(using=using)
    return row


LEVEL_NOTES = {
    1: "Privacy level 1: domains are not stored, so the domain column, the domain filters and the top domain "
    "lists are empty for queries logged since.",
    2: "Privacy level 2: neither domains nor clients are stored; rows show the client as 0.0.0.0 and the top "
    "domain and client lists stay empty for queries logged since.",
    3: "Privacy level 3: no query is stored, only per-minute totals; history, top lists and clients show nothing new.",
}


def privacy_notes(values: dict[str, object]) -> list[str]:
    """One line per setting in force that leaves something out of the log, for the pages it affects."""
    notes = []
    if values["level"] in LEVEL_NOTES:
        notes.append(LEVEL_NOTES[values["level"]])
    if values["anonymize_clients"] and values["level"] < 2:
        notes.append(
            f"Client addresses are stored as their network (IPv4 /{values['anonymize_v4_prefix']}, "
            f"IPv6 /{values['anonymize_v6_prefix']}), without device names."
        )
    if values["level"] < 3:
        if values["dont_log_clients"].strip() or values["dont_log_domains"].strip():
            notes.append("Queries of the don't-log clients and domains are not stored (only counted per minute).")
        if values["log_blocked_only"]:
            notes.append("Only blocked queries are stored; the others are only counted per minute.")
    return notes
