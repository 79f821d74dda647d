"""Forms of the settings pages (members, teams, API keys) and the audit log filters. The rules
themselves live in accounts.services; forms only shape input, and the views copy a service's
AccountRuleError onto the field it names."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms
from django.utils import timezone

from accounts import selectors
from accounts.models import ApiToken, Membership, Organization, Team

ROLE_HELP = {
    Membership.Role.OWNER: "Everything, including granting and taking away the Owner role.",
    Membership.Role.ADMIN: "Manages members, teams, service keys, quotas and single sign-on; sees every agent.",
    Membership.Role.BUILDER: "Creates, changes and shares agents; runs them.",
    Membership.Role.OPERATOR: "Runs agents shared with them, steers runs, decides approvals, manages automations.",
    Membership.Role.VIEWER: "Sees agents and runs shared with them; changes nothing.",
    Membership.Role.AUDITOR: "Sees every agent, run and the audit log; runs nothing.",
}


def role_choices(*, can_grant_owner: bool) -> list[tuple[str, str]]:
    return [(value, label) for value, label in Membership.Role.choices
            if value != Membership.Role.OWNER or can_grant_owner]


class MemberAddForm(forms.Form):
    login = forms.CharField(
        label="Username or email", max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "jane or jane@example.com"}),
        help_text="Someone with an account is added at once. A new email address gets an invitation to set a "
        "password.",
    )
    role = forms.ChoiceField(initial=Membership.Role.VIEWER)

    def __init__(self, *args, can_grant_owner: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices(can_grant_owner=can_grant_owner)

    def clean_login(self) -> str:
        value = self.cleaned_data["login"].strip()
        if "\x00" in value:
            raise forms.ValidationError("Null characters are not allowed.")
        return value


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField()

    def __init__(self, *args, can_grant_owner: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices(can_grant_owner=can_grant_owner)


class TeamForm(forms.Form):
    name = forms.CharField(max_length=120, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    description = forms.CharField(max_length=300, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    parent = forms.ChoiceField(
        required=False, label="Part of",
        help_text="The department (or larger team) this team belongs to. Sharing an agent with a department "
        "shares it with all of its teams.",
    )

    def __init__(self, *args, organization: Organization, team: Team | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        # Neither the team itself nor anything below it can become its parent.
        excluded = {team.id, *selectors.team_descendant_ids(team=team)} if team is not None else set()
        self.teams = {str(t.id): t for t in selectors.team_list(organization=organization) if t.id not in excluded}
        self.fields["parent"].choices = [("", "— nothing (top level) —")] + [
            (key, t.name) for key, t in self.teams.items()]

    def clean_parent(self) -> Team | None:
        value = self.cleaned_data.get("parent") or ""
        return self.teams.get(value) if value else None


class TeamMemberAddForm(forms.Form):
    member = forms.ChoiceField(label="Add a member")

    def __init__(self, *args, team: Team, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        inside = set(team.members.values_list("id", flat=True))
        self.members = {
            str(m.id): m for m in selectors.membership_list(organization=team.organization)
            if m.user_id not in inside
        }
        self.fields["member"].choices = [("", "Choose a member…")] + [
            (key, m.user.get_full_name() or m.user.get_username()) for key, m in self.members.items()]

    def clean_member(self) -> Membership:
        return self.members[self.cleaned_data["member"]]


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autocomplete": "off",
                                                                         "placeholder": "e.g. CI pipeline"}))
    kind = forms.ChoiceField(choices=ApiToken.Kind.choices, initial=ApiToken.Kind.PERSONAL, widget=forms.RadioSelect,
                             help_text="A personal key acts as you. A service key belongs to the organization, for "
                             "integrations; owners and admins manage it.")
    scopes = forms.MultipleChoiceField(choices=ApiToken.Scope.choices, initial=[ApiToken.Scope.READ],
                                       widget=forms.CheckboxSelectMultiple,
                                       help_text="A key never does more than its person's role allows.")
    expires_on = forms.DateField(required=False, label="Expires on",
                                 widget=forms.DateInput(attrs={"type": "date"}),
                                 help_text="The key stops working at 00:00 UTC that day. Empty: it never expires.")

    def __init__(self, *args, can_manage_service_keys: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not can_manage_service_keys:
            del self.fields["kind"]

    def clean_name(self) -> str:
        value = self.cleaned_data["name"].strip()
        if not value:
            raise forms.ValidationError("Give the key a name, to recognise it later.")
        return value

    def clean_expires_on(self):
        value = self.cleaned_data.get("expires_on")
        if value is None:
            return None
        expires_at = datetime.combine(value, time.min, tzinfo=UTC)
        if expires_at <= timezone.now():
            raise forms.ValidationError("Pick a day after today.")
        return expires_at


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150, label="Actor",
                            widget=forms.TextInput(attrs={"placeholder": "username", "autocomplete": "off"}))
    action = forms.CharField(required=False, max_length=60, label="Action",
                             widget=forms.TextInput(attrs={"placeholder": "e.g. agent. or membership.role_change",
                                                           "autocomplete": "off", "list": "audit-actions"}))
    target = forms.CharField(required=False, max_length=64, label="Target id",
                             widget=forms.TextInput(attrs={"autocomplete": "off"}))
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        for name in ("actor", "action", "target"):
            if "\x00" in (data.get(name) or ""):
                self.add_error(name, "Null characters are not allowed.")
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "Must not be before “From”.")
        return data

    def filters(self) -> dict:
        """audit_list's keyword arguments: whole days in UTC, `until` including its day."""
        data = self.cleaned_data if self.is_valid() else {}
        since, until = data.get("since"), data.get("until")
        return {
            "actor": (data.get("actor") or "").strip(),
            "action": (data.get("action") or "").strip(),
            "target_id": (data.get("target") or "").strip(),
            "since": datetime.combine(since, time.min, tzinfo=UTC) if since else None,
            "until": datetime.combine(until, time.min, tzinfo=UTC) + timedelta(days=1) if until else None,
        }
