"""The sample SPA in a real browser: log in at the provider, call the API, see a silent refresh,
revoke another device's session, log out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect

from tests.support.stack import Stack

TIMEOUT = 15_000


@dataclass
class Watch:
    """What a browser context did: requests off this machine (blocked) and console errors."""

    external: list[tuple[str, str]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def open_context(chromium: Browser, watch: Watch) -> BrowserContext:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)

    def only_loopback(route: Route) -> None:
        request = route.request
        if urlsplit(request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
            return
        watch.external.append((request.frame.url, request.url))
        route.abort()

    context.route("**/*", only_loopback)
    return context


def open_page(context: BrowserContext, watch: Watch) -> Page:
    page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watch.console_errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    return page


def log_in(page: Page, stack: Stack, username: str = "alice") -> None:
    page.goto(stack.url + "/")
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    page.click("#login")
    page.wait_for_url(f"{stack.provider.issuer}/**")
    page.fill('input[name="login"]', username)
    page.fill('input[name="password"]', "password")
    page.click('button[type="submit"]')
    page.wait_for_url(stack.url + "/")
    expect(page.locator("body")).to_have_attribute("data-state", "signed-in")


def spa_errors(watch: Watch, stack: Stack) -> list[str]:
    """Console errors on the SPA's own pages, apart from the expected 401 of a revoked session."""
    return [e for e in watch.console_errors if e.startswith(stack.url) and "401" not in e]


def test_spa_logs_in_refreshes_silently_revokes_another_device_and_logs_out(
    chromium: Browser, spa_stack: Stack, artifacts: Path,
) -> None:
    stack = spa_stack
    watch = Watch()
    first = open_context(chromium, watch)
    page = open_page(first, watch)

    # Log in through the provider's real login page; the SPA shows the user and calls the API.
    log_in(page, stack)
    expect(page.locator("#user-name")).to_have_text("User alice")
    expect(page.locator("#user-email")).to_have_text("alice@example.test")
    expect(page.locator("#api-status")).to_have_attribute("data-kind", "ok")
    fingerprint = page.locator("#token-fingerprint").inner_text()
    assert len(fingerprint) == 16
    assert stack.provider.stats()["grants"] == {"authorization_code": 1, "refresh_token": 0}

    # A state-changing call through the gateway (CSRF header added by the SPA's bff()).
    page.fill("#item-text", "Written from the SPA")
    page.click("#item-form button[type=submit]")
    expect(page.locator("#items li .text")).to_have_text(["Written from the SPA"])

    # The access token expires (as far as the gateway can tell): the next call still works, with
    # a silent refresh at the provider and a new token at the API.
    stack.clock.advance(stack.settings.refresh_leeway + 300)
    page.click("#call-api")
    expect(page.locator("#refresh-count")).to_have_text("1")
    expect(page.locator("#refresh-badge")).to_be_visible()
    expect(page.locator("#api-status")).to_have_attribute("data-kind", "ok")
    assert page.locator("#token-fingerprint").inner_text() != fingerprint
    assert stack.provider.stats()["grants"]["refresh_token"] == 1
    page.screenshot(path=str(artifacts / "spa-logged-in.png"), full_page=True)

    # A second browser signs in as the same user and shows up in the first one's session list.
    second = open_context(chromium, watch)
    other = open_page(second, watch)
    log_in(other, stack)
    page.click("#reload-sessions")
    sessions = page.locator("#sessions > li")
    expect(sessions).to_have_count(2)
    expect(page.locator('#sessions > li[data-current="true"]')).to_have_count(1)

    # Revoked from the first browser, the second's next call gets 401 and it shows signed-out.
    page.locator('#sessions > li[data-current="false"] button.revoke').click()
    expect(sessions).to_have_count(1)
    other.click("#call-api")
    expect(other.locator("body")).to_have_attribute("data-state", "signed-out")
    expect(other.locator("#login")).to_be_visible()
    page.click("#call-api")
    expect(page.locator("#api-status")).to_have_attribute("data-kind", "ok")

    # Log out: the gateway ends the session, the provider ends its own, the SPA is signed out.
    page.click("#logout")
    page.wait_for_url(f"{stack.provider.issuer}/**")
    page.click('button[name="logout"]')
    page.wait_for_url(stack.url + "/")
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    assert stack.settings.cookie_name not in [c["name"] for c in first.cookies(stack.url)]
    assert stack.provider.stats()["end_sessions"] == 1

    # Nothing left this machine from the SPA's pages, and the strict CSP was never violated.
    assert [ext for ext in watch.external if ext[0].startswith(stack.url)] == []
    assert spa_errors(watch, stack) == []
    first.close()
    second.close()


def test_spa_signed_out_page_loads_under_its_csp_without_external_requests(
    chromium: Browser, spa_stack: Stack,
) -> None:
    watch = Watch()
    context = open_context(chromium, watch)
    page = open_page(context, watch)
    response = page.goto(spa_stack.url + "/")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("body")).to_have_attribute("data-state", "signed-out")
    expect(page.locator("#create-account")).to_have_attribute(
        "href", "/bff/login?returnTo=%2F&prompt=create")
    assert watch.external == []
    # The one expected error: /bff/user answering 401 for a browser that is not signed in.
    assert spa_errors(watch, spa_stack) == []
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgba(0, 0, 0, 0)"
    context.close()
