"""The connection form on Airflow 3.1, generated from the declarative form that Airflow 3.2+ reads.

Airflow 3.2+ builds the connection form from ``conn-fields`` / ``ui-field-behaviour`` in the provider info
(provider_info.py) without importing hooks. Airflow 3.1 ignores those keys: its providers manager asks each hook
class for ``get_connection_form_widgets()`` (wtforms fields) and ``get_ui_field_behaviour()``, and only when the
class defines them itself (it looks in ``hook_class.__dict__``, so inherited methods are not seen). On 3.2+ the
same methods are deprecated, so they must not exist there.

:class:`ConnectionFormMixin` therefore adds both methods, on Airflow < 3.2 only, to every subclass that declares
its own ``conn_type``, and builds their results from provider_info's declaration of that connection type: one
source of truth for the field names, labels, defaults and choices.

wtforms and flask_appbuilder are imported inside the methods, never here: Airflow 3 does not install them, and 3.1's
api-server calls the methods with both replaced by stand-ins that turn each field into a JSON-schema ``Param``
(``HookMetaService._get_hooks_with_mocked_fab``), which it can only do for names looked up at call time.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_carbon._compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_carbon.provider_info import CONNECTION_TYPES

__all__ = ["ConnectionFormMixin", "declaration", "field_behaviour", "form_widgets"]


def declaration(conn_type: str) -> dict[str, Any] | None:
    """provider_info's entry for this connection type, or None for a type the provider does not declare."""
    return next((entry for entry in CONNECTION_TYPES if entry["connection-type"] == conn_type), None)


def form_widgets(conn_type: str) -> dict[str, Any]:
    """``get_connection_form_widgets()`` for Airflow 3.1: one wtforms field per ``conn-fields`` entry, same name.

    3.1 accepts only StringField, IntegerField, PasswordField and BooleanField (any other class drops the hook's
    whole form), so a ``number`` setting is a text field; the hook parses it with ``float()`` as it does any extra.
    JSON-schema bounds such as ``minimum`` have no counterpart in 3.1's form (the hook refuses only non-numbers).
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from wtforms import BooleanField, IntegerField, PasswordField, StringField
    from wtforms.validators import Optional, any_of

    entry = declaration(conn_type)
    if entry is None:
        raise KeyError(f"connection type {conn_type!r} is not declared in provider_info")
    widgets: dict[str, Any] = {}
    for name, field in entry["conn-fields"].items():
        schema = field["schema"]
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        default = schema.get("default")
        # a nullable setting may stay empty: the hook then falls back to [carbon] config and its defaults
        validators: list[Any] = [Optional()] if "null" in types else []
        if "enum" in schema:
            validators.append(any_of(schema["enum"]))
        common = {"label": field["label"], "description": field.get("description", ""), "validators": validators}
        if "boolean" in types:
            widgets[name] = BooleanField(default=default, **common)
        elif "integer" in types:
            widgets[name] = IntegerField(default=default, widget=BS3TextFieldWidget(), **common)
        elif schema.get("format") == "password":
            widgets[name] = PasswordField(default=default, widget=BS3PasswordFieldWidget(), **common)
        else:
            text_default = None if default is None else str(default)  # a text field holds text, e.g. "900"
            widgets[name] = StringField(default=text_default, widget=BS3TextFieldWidget(), **common)
    return widgets


def field_behaviour(conn_type: str) -> dict[str, Any]:
    """``get_ui_field_behaviour()`` for Airflow 3.1: the ``ui-field-behaviour`` entry with 3.1's key names."""
    entry = declaration(conn_type)
    if entry is None:
        raise KeyError(f"connection type {conn_type!r} is not declared in provider_info")
    behaviour = entry["ui-field-behaviour"]
    return {
        "hidden_fields": list(behaviour.get("hidden-fields", [])),
        "relabeling": dict(behaviour.get("relabeling", {})),
        "placeholders": dict(behaviour.get("placeholders", {})),
    }


class ConnectionFormMixin:
    """Gives each concrete hook the connection form Airflow 3.1 asks hooks for; adds nothing on Airflow 3.2+."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        conn_type = cls.__dict__.get("conn_type")
        if AIRFLOW_V_3_2_PLUS or not isinstance(conn_type, str) or declaration(conn_type) is None:
            return

        def get_connection_form_widgets(hook_class: type) -> dict[str, Any]:
            return form_widgets(conn_type)

        def get_ui_field_behaviour(hook_class: type) -> dict[str, Any]:
            return field_behaviour(conn_type)

        # set on the class itself: Airflow 3.1 reads these from hook_class.__dict__ only
        cls.get_connection_form_widgets = classmethod(get_connection_form_widgets)  # type: ignore[attr-defined]
        cls.get_ui_field_behaviour = classmethod(get_ui_field_behaviour)  # type: ignore[attr-defined]
