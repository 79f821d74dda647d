from __future__ import annotations

from django.test import Client

from conftest import PASSWORD


def test_sign_up_is_closed_until_an_admin_adds_people(db):
    response = Client().post(
        "/accounts/signup/", {"username": "mallory", "password1": PASSWORD, "password2": PASSWORD}
    )

    assert b"closed" in response.content.lower()
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username="mallory").exists()


def test_a_member_signs_in_with_username_and_password(owner):
    response = Client().post("/accounts/login/", {"login": "olivia", "password": PASSWORD}, follow=True)

    assert response.status_code == 200
    assert response.wsgi_request.user.username == "olivia"
