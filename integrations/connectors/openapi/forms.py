"""The register/edit form of an HTTP API. It only collects; every rule is the service's, whose
field errors (`spec`, `auth_config.name`...) land on the matching inputs here."""

from __future__ import annotations

from typing import Any

from django import forms

from integrations.connectors.openapi import spec as openapi_spec
from integrations.connectors.openapi.spec import Document
from integrations.models import HttpApi

Auth = HttpApi.Auth

# Service error keys -> form fields.
ERROR_FIELDS = {
    "auth_config.in": "key_in", "auth_config.name": "key_name", "auth_config.prefix": "key_prefix",
    "auth_config.authorize_url": "authorize_url", "auth_config.token_url": "token_url",
    "auth_config.client_id": "client_id", "auth_config.scopes": "oauth_scopes",
    "auth_config.check_operation": "check_operation",
}


class HttpApiForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="Shown in the catalog, e.g. “Billing API”.")
    slug = forms.CharField(required=False, max_length=40, label="Slug",
                           help_text="Lowercase letters, digits and hyphens; tools are named http_<slug>_<operation>. "
                                     "It can't change later. Empty: made from the name.")
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                                  help_text="What the API is for; agents' builders read it in the catalog.")
    document_file = forms.FileField(required=False, label="Upload the OpenAPI document",
                                    help_text="OpenAPI 3.0 or 3.1, JSON or YAML, at most 2 MB.",
                                    widget=forms.ClearableFileInput(
                                        attrs={"accept": ".json,.yaml,.yml,application/json"}))
    document_text = forms.CharField(required=False, label="…or paste it", strip=False,
                                    widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false",
                                                                 "placeholder": '{"openapi": "3.1.0", ...}'}))
    base_url = forms.CharField(required=False, max_length=500, label="Base URL",
                               help_text="Where calls go, e.g. https://api.example.com/v1. Empty: the document's "
                                         "first server URL.")
    auth = forms.ChoiceField(choices=Auth.choices, initial=Auth.NONE, label="Authentication",
                             widget=forms.Select(attrs={"data-http-api-auth": ""}),
                             help_text="Connections hold the credentials; this says how they are sent.")
    key_in = forms.ChoiceField(choices=[("header", "Header"), ("query", "Query parameter")], required=False,
                               initial="header", label="Send the key in")
    key_name = forms.CharField(required=False, max_length=100, label="Header or parameter name",
                               help_text="e.g. X-API-Key. Empty: as the document's security scheme says.")
    key_prefix = forms.CharField(required=False, max_length=40, strip=False, label="Value prefix",
                                 help_text="Put before the key, e.g. “Bearer ” for an Authorization header.")
    authorize_url = forms.CharField(required=False, max_length=500, label="Authorization URL",
                                    help_text="Empty: the document's authorization-code flow.")
    token_url = forms.CharField(required=False, max_length=500, label="Token URL")
    client_id = forms.CharField(required=False, max_length=300, label="Client ID")
    client_secret = forms.CharField(required=False, max_length=1000, strip=False, label="Client secret",
                                    widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    oauth_scopes = forms.CharField(required=False, max_length=2000, label="Scopes to request",
                                   help_text="Space-separated, as the provider spells them. Used unless the document "
                                             "names scopes per operation.")
    check_operation = forms.CharField(required=False, max_length=100, label="Check connections with",
                                      help_text="The operationId of a GET operation without arguments that proves a "
                                                "key works (called when someone connects). Empty: keys are taken as "
                                                "given.")

    def __init__(self, *args: Any, instance: HttpApi | None = None, document: Document | None = None,
                 **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None:
            config = instance.auth_config
            kwargs.setdefault("initial", {
                "name": instance.name, "description": instance.description, "base_url": instance.base_url,
                "auth": instance.auth, "key_in": config.get("in", "header"), "key_name": config.get("name", ""),
                "key_prefix": config.get("prefix", ""), "authorize_url": config.get("authorize_url", ""),
                "token_url": config.get("token_url", ""), "client_id": config.get("client_id", ""),
                "oauth_scopes": " ".join(config.get("scopes", [])),
                "check_operation": config.get("check_operation", ""),
            })
        super().__init__(*args, **kwargs)
        if instance is not None:
            del self.fields["slug"]
            self.fields["document_file"].label = "Upload a new document"
            self.fields["document_file"].help_text = "Leave both empty to keep the current one. Enabled operations " \
                                                     "that the new document still has stay enabled."
            self.fields["document_text"].label = "…or paste it"
            if instance.secret:
                self.fields["client_secret"].help_text = "A secret is stored. Leave blank to keep it."
        if document is not None:
            choices = [("", "None: take credentials as given")] + [
                (o.operation_id, f"{o.operation_id} ({o.label})") for o in document.supported_operations
                if o.method == "GET"
            ]
            self.fields["check_operation"] = forms.ChoiceField(
                choices=choices, required=False, label=self.fields["check_operation"].label,
                help_text="A GET operation without arguments that proves a key works (called when someone connects).")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        upload = data.get("document_file")
        if upload is not None:
            if upload.size > openapi_spec.MAX_DOCUMENT_CHARS:
                self.add_error("document_file", "The document is larger than 2 MB.")
            else:
                try:
                    data["document"] = upload.read().decode("utf-8-sig")
                except UnicodeDecodeError:
                    self.add_error("document_file", "The file isn't UTF-8 text (JSON or YAML).")
        elif (data.get("document_text") or "").strip():
            data["document"] = data["document_text"]
        elif self.instance is None:
            self.add_error("document_text", "Upload the OpenAPI document or paste it here.")
        return data

    def auth_config(self) -> dict[str, Any] | None:
        """The settings of the chosen auth, or None when they were left empty (the service then
        takes them from the document, or keeps the current ones)."""
        data = self.cleaned_data
        auth = data.get("auth")
        check = data.get("check_operation") or ""
        if auth == Auth.API_KEY:
            if not (data.get("key_name") or data.get("key_prefix") or check):
                return None
            config = {"in": data.get("key_in") or "header", "name": data.get("key_name") or "",
                      "prefix": data.get("key_prefix") or ""}
        elif auth == Auth.OAUTH2:
            fields = ("authorize_url", "token_url", "client_id", "oauth_scopes")
            if not any(data.get(f) for f in fields) and not check:
                return None
            config = {"authorize_url": data.get("authorize_url") or "", "token_url": data.get("token_url") or "",
                      "client_id": data.get("client_id") or "", "scopes": (data.get("oauth_scopes") or "").split()}
        else:
            return {}
        if check:
            config["check_operation"] = check
        return {k: v for k, v in config.items() if v not in ("", None)} | (
            {"scopes": config["scopes"]} if "scopes" in config else {})

    def service_values(self) -> dict[str, Any]:
        data = self.cleaned_data
        values: dict[str, Any] = {
            "name": data["name"], "description": data.get("description") or "", "base_url": data.get("base_url") or "",
            "auth": data["auth"], "auth_config": self.auth_config(), "client_secret": data.get("client_secret") or "",
        }
        if "document" in data:
            values["spec"] = data["document"]
        if self.instance is None:
            values["slug"] = data.get("slug") or ""
        return values

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        uploaded = self.cleaned_data.get("document_file") is not None
        for key, problems in errors.items():
            name = ERROR_FIELDS.get(key, key)
            if key == "spec":
                name = "document_file" if uploaded else "document_text"
            self.add_error(name if name in self.fields else None, problems)
