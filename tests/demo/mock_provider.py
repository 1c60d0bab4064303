"""Driving the demo provider's (oidc-provider-mock's) pages with an httpx client, like a browser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx


@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = Form(attr.get("action", ""), attr.get("method", "get").lower())
            self.forms.append(self._open)
        elif self._open is not None and tag == "input" and attr.get("name"):
            self._open.inputs[attr["name"]] = attr.get("value", "")
        elif self._open is not None and tag == "button" and attr.get("name"):
            self._open.buttons.append((attr["name"], attr.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms(page: httpx.Response) -> list[Form]:
    parser = _Forms()
    parser.feed(page.text)
    parser.close()
    return parser.forms


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def login(client: httpx.Client, gateway: str, username: str = "alice",
          query: str = "") -> httpx.Response:
    """From ``{gateway}/bff/login``, sign in at the demo provider; the callback's response."""
    start = client.get(f"{gateway}/bff/login{query}")
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    assert _origin(authorize) != gateway
    page = client.get(authorize)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.text
    form = next(f for f in forms(page) if "sub" in f.inputs)
    assert form.method == "post"
    answer = client.post(urljoin(str(page.url), form.action), data={"sub": username})
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    assert callback.startswith(f"{gateway}/bff/callback?"), callback
    return client.get(callback)


def end_provider_session(client: httpx.Client, logout_url: str) -> str:
    """Follow the provider's end-session page; the URL it finally sends the browser to."""
    page = client.get(logout_url)
    assert page.status_code == 200, page.text
    form = next(f for f in forms(page) if f.method == "post")
    done = client.post(urljoin(str(page.url), form.action), data=form.inputs)
    assert done.status_code == 302, done.text
    return done.headers["location"]
