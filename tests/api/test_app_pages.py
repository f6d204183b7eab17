"""The /app/apps console pages: the apps listed, a spec added from text (a refused one shown
again with every problem under its line), an app's environments, services, secrets (set or not,
never a value) and spec; members see only their own apps."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps.models import App, AppRelease, ShipRequest
from deploymate.auth.models import User
from deploymate.servers.models import Server
from tests.api.test_console import _console_login, _form_csrf
from tests.api.test_deployment_pages import _member
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import login, run_in_app

PAGE = "/app/apps"
SECRET = "postgres://shop:Sup3r-s3cret-VALUE-QUOKKA@db/shop"
SPEC = """app: shop
services:
  web:
    image: registry.example.com/shop:1.4
    port: 8000
    health: {path: /up, expect: 200}
    domains: [shop.example.com]
    volumes: [{name: uploads, path: /app/uploads}]
    smoke: [{http: /api/health, expect: 200}]
  worker:
    build: {context: ., dockerfile: Dockerfile.worker}
    command: [python, -m, shop.worker]
env: {LOG_LEVEL: info}
secrets: [DATABASE_URL, SECRET_KEY]
required_env: [DATABASE_URL]
environments:
  staging:
    servers: [staging-1]
    domains: {web: [staging.shop.example.com]}
  production:
    servers: [prod-1, prod-2]
    rollout: canary
"""


def _add_servers(client: TestClient, owner: str, names: tuple[str, ...]) -> None:
    async def add(db: AsyncSession) -> None:
        owner_id = (await db.execute(select(User.id).where(User.username == owner))).scalar_one()
        for name in names:
            db.add(
                Server(
                    name=name,
                    host=f"{name}.example.test",
                    username="deploy",
                    auth_type="password",
                    credentials="gAAAAA-not-read-here",
                    owner_id=owner_id,
                )
            )
        await db.commit()

    run_in_app(client, add)


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    """The admin signed in to the console, with the servers SPEC names."""
    assert _console_login(client, "admin", ADMIN_PASSWORD) == "/app"
    _add_servers(client, "admin", ("staging-1", "prod-1", "prod-2"))
    return client


def _post(client: TestClient, text: str) -> httpx.Response:
    csrf = _form_csrf(client.get(PAGE).text)
    return client.post(PAGE, data={"csrf_token": csrf, "spec": text}, follow_redirects=False)


def _count(client: TestClient) -> int:
    async def count(db: AsyncSession) -> int:
        return int((await db.execute(select(func.count()).select_from(App))).scalar_one())

    result: int = run_in_app(client, count)
    return result


def _text(html: str) -> str:
    """The page's text without tags, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def _card(html: str, testid: str, attr: str, value: str) -> str:
    match = re.search(
        rf'<section class="card" data-testid="{testid}" data-{attr}="{value}">(.*?)</section>',
        html,
        re.S,
    )
    assert match, f"no {testid} card {value}"
    return match.group(1)


def _secret_states(html: str, env: str) -> dict[str, str]:
    card = _card(html, "environment", "env", env)
    return dict(re.findall(r'data-secret="([^"]+)" data-state="([^"]+)"', card))


def test_a_good_spec_redirects_to_its_page_which_shows_the_app(admin: TestClient) -> None:
    empty = admin.get(PAGE)
    assert empty.status_code == 200 and "No apps yet" in empty.text
    assert '<a href="/app/apps" aria-current="page">Apps</a>' in empty.text
    assert 'name="spec"' in empty.text and 'rows="20"' in empty.text
    assert "deploymate app validate" in empty.text and "docs/apps.md" in empty.text

    res = _post(admin, SPEC.replace("\n", "\r\n"))  # as a browser sends a textarea
    assert res.status_code == 303 and res.headers["location"] == "/app/apps/shop", res.text
    page = admin.get(res.headers["location"])
    assert page.status_code == 200 and "App shop added." in page.text
    html = page.text

    # Environments side by side: kind, servers, the domains that apply there.
    staging = _card(html, "environment", "env", "staging")
    production = _card(html, "environment", "env", "production")
    assert html.index('data-env="staging"') < html.index('data-env="production"')
    assert '<span class="pill" data-testid="kind">staging</span>' in staging
    assert '<span class="pill" data-testid="kind">production</span>' in production
    assert "<code>staging-1</code>" in staging and "prod-1" not in staging
    assert "<code>prod-1</code><br><code>prod-2</code>" in production and "canary" in production
    web_staging = re.search(r'<li data-service="web">(.*?)</li>', staging, re.S)
    web_production = re.search(r'<li data-service="web">(.*?)</li>', production, re.S)
    assert web_staging and web_production
    assert "staging.shop.example.com" in web_staging.group(1)
    assert "(set for staging)" in web_staging.group(1)
    assert "<code>shop.example.com</code>" in web_production.group(1)
    assert "staging." not in web_production.group(1)
    assert "no domain" in re.findall(r'<li data-service="worker">(.*?)</li>', staging, re.S)[0]

    # Services: image or build, port, command, health, domains, volumes, smoke.
    web = _text(_card(html, "service", "service", "web"))
    for part in (
        "registry.example.com/shop:1.4",
        "8000",
        "HTTP /up expecting 200",
        "shop.example.com",
        "uploads → /app/uploads",
        "GET /api/health expecting 200",
    ):
        assert part in web, part
    worker = _text(_card(html, "service", "service", "worker"))
    assert "context ., dockerfile Dockerfile.worker" in worker and "python -m shop.worker" in worker

    # The spec as stored, one numbered line per row, stored with LF line ends.
    rows = re.findall(r'<span class="spec-line" data-line="(\d+)">([^<]*)</span>', html)
    assert [int(n) for n, _ in rows] == list(range(1, SPEC.count("\n") + 1))
    assert unescape(rows[4][1]) == " 5 │     port: 8000"
    assert admin.get("/api/apps/shop").json()["spec_text"] == SPEC
    assert "comes later" in html and "deploymate app deploy" in html

    listed = admin.get(PAGE).text
    assert "App shop added." not in listed  # said once
    row = re.search(r'<tr data-testid="app-row" data-app="shop">(.*?)</tr>', listed, re.S)
    assert row, listed
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert '<a href="/app/apps/shop"><strong>shop</strong></a>' in cells[0]
    assert _text(cells[1]) == "web, worker"
    assert _text(cells[2]) == "staging staging production production"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", cells[3])

    # Sent again, the same name updates the app; ?edit= fills the form with the stored spec.
    edit = admin.get(f"{PAGE}?edit=shop")
    assert "rollout: canary" in unescape(edit.text.split('name="spec"')[1])
    again = _post(admin, SPEC.replace("rollout: canary", "rollout: all"))
    assert again.status_code == 303 and again.headers["location"] == "/app/apps/shop"
    assert "App shop updated." in admin.get("/app/apps/shop").text
    assert _count(admin) == 1


def test_a_refused_spec_lists_its_problems_under_their_lines_and_stores_nothing(
    admin: TestClient,
) -> None:
    bad = (
        SPEC.replace("port: 8000", "port: 80a").replace("rollout: canary", "rollot: canary")
        + "# <b>kept</b> & escaped\n"
    )
    res = _post(admin, bad)
    assert res.status_code == 422, res.text
    html = res.text
    assert "The spec was refused (2 problems); nothing was stored." in html
    problems = [_text(p) for p in re.findall(r'data-testid="problem">(.*?)</li>', html)]
    assert problems == [
        'line 5, column 11: services.web.port: expected an integer 1-65535, got "80a"',
        "line 22, column 5: environments.production.rollot: unknown key; did you mean rollout?",
    ]
    # The text is kept in the textarea, escaped.
    kept = re.search(r'<textarea id="a-spec"[^>]*>\n(.*?)</textarea>', html, re.S)
    assert kept and unescape(kept.group(1)) == bad
    assert "<b>kept</b>" not in html and "&lt;b&gt;kept&lt;/b&gt;" in html
    # Line by line: the problem lines marked, each message under its line at its column.
    marked = re.findall(
        r'<mark class="spec-line problem-line" data-line="(\d+)">([^<]*)</mark>', html
    )
    assert [(n, unescape(t)) for n, t in marked] == [
        ("5", " 5 │     port: 80a"),
        ("22", "22 │     rollot: canary"),
    ]
    messages = re.findall(
        r'<strong class="problem-message" data-line="(\d+)">([^<]*)</strong>', html
    )
    assert messages[0][0] == "5"
    assert unescape(messages[0][1]).startswith("   │           ^ services.web.port: expected")
    assert messages[1][0] == "22" and "did you mean rollout?" in unescape(messages[1][1])
    plain = re.findall(r'<span class="spec-line" data-line="(\d+)">', html)
    assert len(plain) + len(marked) == bad.count("\n")
    assert _count(admin) == 0 and admin.get("/api/apps").json() == []

    # A server nobody has, and a spec that is not YAML: refused the same way.
    unknown = _post(admin, SPEC.replace("prod-2", "prod-9"))
    assert unknown.status_code == 422
    assert "no server named prod-9" in unknown.text and 'data-line="21"' in unknown.text
    broken = _post(admin, "app: [shop\n")
    assert broken.status_code == 422 and "not valid YAML" in broken.text
    assert _count(admin) == 0


def test_secrets_show_set_or_not_set_per_environment_and_never_their_value(
    admin: TestClient,
) -> None:
    assert _post(admin, SPEC).status_code == 303
    html = admin.get("/app/apps/shop").text
    for env in ("staging", "production"):
        assert _secret_states(html, env) == {"DATABASE_URL": "not set", "SECRET_KEY": "not set"}
    hint = 'printf %s "$VALUE" | deploymate secrets set shop production DATABASE_URL'
    assert hint in unescape(_card(html, "environment", "env", "production"))

    csrf = _form_csrf(html)
    url = "/api/apps/shop/secrets/production/DATABASE_URL"
    res = admin.put(url, json={"value": SECRET}, headers={"X-CSRF-Token": csrf})
    assert res.status_code == 204, res.text
    html = admin.get("/app/apps/shop").text
    assert _secret_states(html, "production") == {"DATABASE_URL": "set", "SECRET_KEY": "not set"}
    assert _secret_states(html, "staging") == {"DATABASE_URL": "not set", "SECRET_KEY": "not set"}
    # The hint names the secret that still has no value.
    hint = 'printf %s "$VALUE" | deploymate secrets set shop production SECRET_KEY'
    assert hint in unescape(_card(html, "environment", "env", "production"))
    pages = [html, admin.get(PAGE).text, admin.get(f"{PAGE}?edit=shop").text]
    pages.append(_post(admin, SPEC.replace("port: 8000", "port: 80a")).text)
    assert not [p for p in pages if SECRET in p or SECRET in unescape(p)]


def test_a_member_sees_their_own_apps_only(admin: TestClient) -> None:
    assert _post(admin, SPEC).status_code == 303
    admin.cookies.clear()
    _member(admin, "mila")
    _add_servers(admin, "mila", ("mila-1",))
    listed = admin.get(PAGE)
    assert listed.status_code == 200 and "No apps yet" in listed.text
    assert "shop" not in _text(listed.text.split("<h1>")[1].split('id="spec"')[0])
    assert "rollout" not in admin.get(f"{PAGE}?edit=shop").text
    for path in ("/app/apps/shop", "/app/apps/nope", "/app/apps/Not_A_Name"):
        res = admin.get(path)
        assert res.status_code == 404 and "Not found" in res.text, path
        assert "shop.example.com" not in res.text

    # Their own spec names their own server; the admin's servers are not theirs to name.
    mine = SPEC.replace("app: shop", "app: blog").replace("staging-1", "mila-1")
    refused = _post(admin, mine)
    assert refused.status_code == 422 and "no server named prod-1" in refused.text
    own = mine.replace("servers: [prod-1, prod-2]", "servers: [mila-1]")
    res = _post(admin, own)
    assert res.status_code == 303 and res.headers["location"] == "/app/apps/blog"
    assert "App blog added." in admin.get("/app/apps/blog").text
    rows = re.findall(r'data-testid="app-row" data-app="([^"]+)"', admin.get(PAGE).text)
    assert rows == ["blog"]
    # The admin sees both.
    admin.cookies.clear()
    login(admin, "admin", ADMIN_PASSWORD)
    rows = re.findall(r'data-testid="app-row" data-app="([^"]+)"', admin.get(PAGE).text)
    assert rows == ["blog", "shop"]


def test_anonymous_visitors_are_sent_to_the_login_page(client: TestClient) -> None:
    for path in (PAGE, "/app/apps/shop"):
        res = client.get(path, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"] == "/login", path
    res = client.post(PAGE, data={"spec": SPEC}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/login"


# --- ship and roll back from the app's page ---------------------------------------------------


def _app_release(
    client: TestClient, app: str, env: str, number: int, status: str = "succeeded"
) -> None:
    """An app release as a finished deploy leaves it: one image ID per service on each server."""

    async def add(db: AsyncSession) -> None:
        row = (await db.execute(select(App).where(App.name == app))).scalar_one()
        servers = row.spec["environments"][env]["servers"]
        image_id = f"sha256:{number:064x}"
        db.add(
            AppRelease(
                app_id=row.id,
                environment=env,
                number=number,
                commit="0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
                branch="main",
                clean=True,
                spec=row.spec,
                parts={
                    s: {n: {"image_id": image_id} for n in servers} for s in row.spec["services"]
                },
                status=status,
                created_by="admin",
            )
        )
        await db.commit()

    run_in_app(client, add)


def _releases_of(client: TestClient, env: str) -> list[int]:
    async def numbers(db: AsyncSession) -> list[int]:
        rows = await db.execute(
            select(AppRelease.number)
            .where(AppRelease.environment == env)
            .order_by(AppRelease.number)
        )
        return list(rows.scalars())

    result: list[int] = run_in_app(client, numbers)
    return result


def _ship_requests(client: TestClient) -> list[tuple[int, str, str, str]]:
    async def rows(db: AsyncSession) -> list[tuple[int, str, str, str]]:
        found = await db.execute(
            select(
                ShipRequest.id,
                ShipRequest.environment,
                ShipRequest.requested_by_name,
                ShipRequest.status,
            )
        )
        return [(r.id, r.environment, r.requested_by_name, r.status) for r in found]

    result: list[tuple[int, str, str, str]] = run_in_app(client, rows)
    return result


def _form(card: str, testid: str) -> str | None:
    match = re.search(rf'<form [^>]*data-testid="{testid}"[^>]*>.*?</form>', card, re.S)
    return match.group(0) if match else None


def _act(client: TestClient, app: str, env: str, action: str, **data: str) -> httpx.Response:
    csrf = _form_csrf(client.get(PAGE).text)
    return client.post(
        f"{PAGE}/{app}/{env}/{action}",
        data={"csrf_token": csrf, **data},
        follow_redirects=False,
    )


def _error(res: httpx.Response) -> str:
    match = re.search(r'data-testid="form-error">(.*?)</p>', res.text, re.S)
    assert match, res.text
    return _text(match.group(1))


def test_an_admin_gets_ship_and_rollback_forms_that_wait_while_a_release_runs(
    admin: TestClient,
) -> None:
    assert _post(admin, SPEC).status_code == 303
    html = admin.get("/app/apps/shop").text
    # Production ships (the app's name typed); staging is deployed, not shipped.
    ship = _form(_card(html, "environment", "env", "production"), "ship-form")
    assert ship and 'action="/app/apps/shop/production/ship"' in ship
    assert re.search(r'<input id="ship-production-confirm" name="confirm" required', ship)
    assert "Type <code>shop</code> to ship" in ship and "Ship to production</button>" in ship
    assert 'name="from"' not in ship  # one staging environment: nothing to choose
    assert "Ships what serves on staging: the same images" in _text(ship)
    assert _form(_card(html, "environment", "env", "staging"), "ship-form") is None
    # Nothing served twice anywhere: nothing to roll back to.
    assert "rollback-form" not in html

    for number in (1, 2, 3):
        _app_release(admin, "shop", "staging", number)
    _app_release(admin, "shop", "staging", 4, status="failed")
    for number in (1, 2):
        _app_release(admin, "shop", "production", number)
    html = admin.get("/app/apps/shop").text
    staging = _form(_card(html, "environment", "env", "staging"), "rollback-form")
    assert staging and 'action="/app/apps/shop/staging/rollback"' in staging
    # Earlier releases that served, the previous one chosen; a ticked box confirms.
    options = re.findall(r'<option value="(\d+)"( selected)?>', staging)
    assert options == [("2", " selected"), ("1", "")]
    assert 'data-confirm="Roll shop staging back' in staging
    assert '<input type="checkbox" name="confirm" value="yes" required>' in staging
    production = _form(_card(html, "environment", "env", "production"), "rollback-form")
    assert production and re.findall(r'<option value="(\d+)"', production) == ["1"]
    assert re.search(r'<input id="rollback-production-confirm" name="confirm" required', production)
    assert "data-confirm" not in production and 'type="checkbox"' not in production
    assert "(release #4, failed)" in _text(_card(html, "environment", "env", "production"))
    assert "release-running" not in html and " disabled" not in html

    # A release running in staging: its forms wait; production's do not.
    _app_release(admin, "shop", "staging", 5, status="running")
    html = admin.get("/app/apps/shop").text
    staging_card = _card(html, "environment", "env", "staging")
    assert "A release is running in staging" in _text(staging_card)
    staging = _form(staging_card, "rollback-form")
    assert staging and '<button type="submit" disabled>Roll back</button>' in staging
    assert 'name="to" disabled' in staging and 'value="yes" required disabled' in staging
    production_card = _card(html, "environment", "env", "production")
    assert "release-running" not in production_card and " disabled" not in production_card

    # Two staging environments: the ship says which, one whose latest release served chosen.
    eu = "  staging-eu:\n    servers: [staging-1]\n"
    assert _post(admin, SPEC.replace("  production:\n", eu + "  production:\n")).status_code == 303
    _app_release(admin, "shop", "staging-eu", 1)
    html = admin.get("/app/apps/shop").text
    ship = _form(_card(html, "environment", "env", "production"), "ship-form")
    assert ship and '<select id="ship-production-from" name="from">' in ship
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]*)</option>', ship)
    assert options == [
        ("staging", "", "staging (release #5, running)"),
        ("staging-eu", " selected", "staging-eu (release #1)"),
    ]


def test_a_refused_ship_or_rollback_says_why_and_changes_nothing(admin: TestClient) -> None:
    assert _post(admin, SPEC).status_code == 303
    # Nothing on staging yet: nothing to ship.
    res = _act(admin, "shop", "production", "ship", confirm="shop")
    assert res.status_code == 409
    assert _error(res) == "staging has no release of shop yet: deploy it there first"

    _app_release(admin, "shop", "staging", 1)
    # The app's name mistyped: the service's own words, and no release made.
    res = _act(admin, "shop", "production", "ship", confirm="shpo")
    assert res.status_code == 422
    assert "shipping to production needs the app's name typed" in _error(res)
    production = _card(res.text, "environment", "env", "production")
    assert 'data-testid="field-error" data-field="confirm"' in production
    assert "App shop" not in res.text and "Shipping" not in res.text
    assert _releases_of(admin, "production") == [] and _ship_requests(admin) == []
    assert "form-error" not in admin.get("/app/apps/shop").text  # said once, on that answer

    # Staging's latest failed: only a release that serves healthy ships.
    _app_release(admin, "shop", "staging", 2, status="failed")
    res = _act(admin, "shop", "production", "ship", confirm="shop")
    assert res.status_code == 409 and "(2) failed: only a release that serves" in _error(res)
    assert _releases_of(admin, "production") == []

    # Rolling back: the box unticked, then no earlier release that served.
    res = _act(admin, "shop", "staging", "rollback", to="1")
    assert res.status_code == 422 and _error(res) == "Tick the confirmation box to roll back."
    res = _act(admin, "shop", "staging", "rollback", to="1", confirm="yes")
    assert res.status_code == 422
    assert "no earlier release of staging that served to go back to (earlier: none)" in _error(res)
    _app_release(admin, "shop", "production", 1)
    _app_release(admin, "shop", "production", 2)
    res = _act(admin, "shop", "production", "rollback", to="1", confirm="yes")
    assert res.status_code == 422
    assert "rolling production back needs the app's name typed" in _error(res)
    assert _releases_of(admin, "staging") == [1, 2]
    assert _releases_of(admin, "production") == [1, 2]


def test_a_member_requests_a_ship_and_gets_no_production_rollback(admin: TestClient) -> None:
    admin.cookies.clear()
    _member(admin, "mila")
    _add_servers(admin, "mila", ("mila-1",))
    blog = SPEC.replace("app: shop", "app: blog").replace("staging-1", "mila-1")
    assert _post(admin, blog.replace("prod-1, prod-2", "mila-1")).status_code == 303
    for number in (1, 2):
        _app_release(admin, "blog", "staging", number)
        _app_release(admin, "blog", "production", number)

    html = admin.get("/app/apps/blog").text
    production = _card(html, "environment", "env", "production")
    ship = _form(production, "ship-form")
    assert ship and "Request ship</button>" in ship and 'name="confirm"' not in ship
    assert "Ship to production" not in ship and 'href="/app/approvals"' in ship
    assert _form(production, "rollback-form") is None  # production is the admins'
    assert _form(_card(html, "environment", "env", "staging"), "rollback-form")

    res = _act(admin, "blog", "production", "ship")
    assert res.status_code == 303 and res.headers["location"] == "/app/apps/blog"
    [(request_id, env, by, status)] = _ship_requests(admin)
    assert (env, by, status) == ("production", "mila", "pending")
    page = admin.get("/app/apps/blog").text
    assert f"Ship request #{request_id} sent to the admins." in page
    assert _releases_of(admin, "production") == [1, 2]  # nothing shipped yet
    waiting = admin.get("/app/approvals").text
    assert f'data-testid="request" data-request="{request_id}"' in waiting

    # Asked twice for the same release: refused, the first request named.
    res = _act(admin, "blog", "production", "ship")
    assert res.status_code == 409
    assert _error(res) == f"a ship request for this release is already waiting (#{request_id})"
    # Rolling production back anyway (a form from elsewhere) is refused by the service.
    res = _act(admin, "blog", "production", "rollback", to="1", confirm="blog")
    assert res.status_code == 403 and "members do not roll it back" in _error(res)
    assert len(_ship_requests(admin)) == 1 and _releases_of(admin, "production") == [1, 2]
    # Another's app, or none: not found, as on the page.
    res = _act(admin, "nope", "production", "ship")
    assert res.status_code == 404 and "Not found" in res.text


def test_production_serving_stagings_release_offers_no_ship_until_staging_moves_on(
    admin: TestClient,
) -> None:
    assert _post(admin, SPEC).status_code == 303
    _app_release(admin, "shop", "staging", 1)
    _app_release(admin, "shop", "production", 1)

    async def shipped_from_staging(db: AsyncSession) -> None:
        staging = (
            await db.execute(select(AppRelease).where(AppRelease.environment == "staging"))
        ).scalar_one()
        production = (
            await db.execute(select(AppRelease).where(AppRelease.environment == "production"))
        ).scalar_one()
        production.shipped_from = staging.id
        await db.commit()

    run_in_app(admin, shipped_from_staging)
    card = _card(admin.get("/app/apps/shop").text, "environment", "env", "production")
    assert _form(card, "ship-form") is None
    assert "production serves what staging serves (release #1)" in _text(card)
    _app_release(admin, "shop", "staging", 2)
    card = _card(admin.get("/app/apps/shop").text, "environment", "env", "production")
    assert _form(card, "ship-form") is not None and "up-to-date" not in card
