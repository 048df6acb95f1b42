"""The console in a real browser: Playwright driving Debian's chromium against
``sealtune console`` (a subprocess) over the workspace of a real example run.

Log in, walk every page (screenshots kept under ``test-artifacts/console/``),
check the run's security timeline, filter the audit log (htmx swap), export it,
verify an entry, sign a checkpoint; as an operator, see a promotion refused
without a gate report, then promote once ``sealtune assess`` passed for the
version's digest, roll back and revoke; a consumer sees no buttons and gets 403
from the API; a forged CSRF token is refused; the pages work without
JavaScript; and the whole suite sees zero CSP violations.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

RunWorkspace = Any  # conftest.RunWorkspace (conftest modules are not importable)
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
_CSP_HOOK = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM,
                               args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Watch:
    """Collects CSP violations (DOM events and console reports) and failed responses."""

    def __init__(self, context: BrowserContext) -> None:
        self.violations: list[str] = []
        context.add_init_script(_CSP_HOOK)
        context.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            self.violations.append(msg.text)

    def collect(self, page: Page) -> None:
        self.violations += page.evaluate("window.__csp || []")


def _login(page: Page, url: str, key: str) -> None:
    page.goto(url + "/datasets")
    assert page.url.endswith("/login")  # not logged in: sent to the log-in form
    page.fill("#api_key", key)
    page.click("#login")
    page.wait_for_url(url + "/")


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_admin_walks_every_page(browser: Browser, console_url: str,
                                example_run: RunWorkspace) -> None:
    context = browser.new_context(accept_downloads=True)
    watch = Watch(context)
    page = context.new_page()
    _login(page, console_url, example_run.keys["admin"])
    assert page.evaluate("htmx.config.allowEval") is False  # htmx loaded under the CSP
    _shot(page, "overview")
    labels = page.locator("header nav a").all_inner_texts()
    assert labels == ["Overview", "Runs", "Datasets", "Jobs", "Models", "Registry",
                      "Gate reports", "Keys", "Audit log", "Attestation"]
    for label in labels:
        page.click(f"header nav a:text-is('{label}')")
        page.wait_for_load_state()
        assert page.locator("#error").count() == 0, label
        watch.collect(page)
        _shot(page, label.lower().replace(" ", "-"))
    for start, link, name in (("/datasets", "main table a", "dataset"),
                              ("/jobs", "main table a", "job")):
        page.goto(console_url + start)
        page.click(link)
        page.wait_for_load_state()
        assert page.locator("h1").inner_text().lower().startswith(name)
        watch.collect(page)
        _shot(page, name)
    context.close()
    assert watch.violations == []


def test_timeline_of_the_real_run(browser: Browser, console_url: str,
                                  example_run: RunWorkspace) -> None:
    context = browser.new_context()
    watch = Watch(context)
    page = context.new_page()
    _login(page, console_url, example_run.keys["auditor"])
    page.click("header nav a:text-is('Runs')")
    page.click("text=security timeline")
    page.wait_for_selector("#timeline")
    events = page.locator("#timeline li.ev")
    actions = [events.nth(i).get_attribute("data-action") for i in range(events.count())]
    stages = [events.nth(i).get_attribute("data-stage") for i in range(events.count())]
    wanted = ["sandbox.created", "sandbox.data_decrypted", "sandbox.outputs_sealed",
              "sandbox.destroyed"]
    for stage in {s for a, s in zip(actions, stages, strict=True) if a in wanted}:
        seen = [a for a, s in zip(actions, stages, strict=True) if s == stage and a in wanted]
        assert seen == wanted, (stage, seen)
    assert "train" in stages
    assert "key.unwrap" in actions and actions[0] == "pipeline.step_started"
    assert page.locator("li.stage-train .card").first.is_visible()
    watch.collect(page)
    _shot(page, "timeline")
    context.close()
    assert watch.violations == []


def test_audit_filter_export_verify_and_sign(browser: Browser, console_url: str,
                                             example_run: RunWorkspace,
                                             tmp_path: Path) -> None:
    context = browser.new_context(accept_downloads=True)
    watch = Watch(context)
    page = context.new_page()
    _login(page, console_url, example_run.keys["admin"])
    page.goto(console_url + "/audit")
    page.fill("input[name=action]", "sandbox.created")
    with page.expect_response(lambda r: "/audit?" in r.url):
        page.click("#filter")
    cells = page.locator("#entries tbody tr td:nth-child(4)")
    deadline = time.monotonic() + 10  # polled from here: a page function would need eval
    while set(cells.all_inner_texts()) != {"sandbox.created"}:
        assert time.monotonic() < deadline, cells.all_inner_texts()[:5]
        page.wait_for_timeout(100)
    assert "action=sandbox.created" in page.url  # htmx pushed the filtered URL
    _shot(page, "audit-filtered")
    with page.expect_download() as dl:
        page.click("#export-jsonl")
    path = tmp_path / "audit.jsonl"
    dl.value.save_as(path)
    lines = path.read_bytes().splitlines()
    assert len(lines) > 50 and all(json.loads(line)["seq"] for line in lines)
    assert hashlib.sha256(b"\x00" + lines[0]).hexdigest()  # canonical leaves, hashable
    page.click("a.verify")
    page.wait_for_selector("#verdict")
    assert page.locator("#verdict").get_attribute("class") == "ok"
    assert page.locator("#checkpoint").inner_text().count("\n") >= 3
    _shot(page, "audit-verify")
    page.goto(console_url + "/audit")
    page.click("#sign-checkpoint")
    page.wait_for_selector("#checkpoint")
    _shot(page, "checkpoint")
    # a forged CSRF token is refused
    page.goto(console_url + "/audit")
    page.evaluate("document.querySelector('#sign-checkpoint').form.csrf_token.value = 'forged'")
    page.click("#sign-checkpoint")
    assert page.locator("#error").inner_text().startswith("missing or wrong CSRF token")
    r = page.request.post(console_url + "/api/v1/audit/checkpoint")  # cookie, no token
    assert r.status == 403
    watch.collect(page)
    context.close()
    assert watch.violations == []


def test_consumer_sees_no_buttons_and_gets_403(browser: Browser, console_url: str,
                                               example_run: RunWorkspace) -> None:
    context = browser.new_context()
    watch = Watch(context)
    page = context.new_page()
    _login(page, console_url, example_run.keys["consumer"])
    assert page.locator("header nav a").all_inner_texts() == ["Overview", "Models", "Registry"]
    assert page.locator("#consumer-note").is_visible()
    page.click("header nav a:text-is('Models')")
    assert page.locator("main button").count() == 0
    _shot(page, "consumer-models")
    for path in ("/api/v1/audit/entries", "/api/v1/datasets", "/api/v1/audit/export"):
        assert page.request.get(console_url + path).status == 403
    page.goto(console_url + "/audit")
    assert page.locator("#error").is_visible() and page.locator("#sign-checkpoint").count() == 0
    _shot(page, "consumer-403")
    watch.collect(page)
    context.close()
    assert watch.violations == []


def test_read_views_work_without_javascript(browser: Browser, console_url: str,
                                            example_run: RunWorkspace) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    _login(page, console_url, example_run.keys["auditor"])
    page.goto(console_url + "/audit")
    page.fill("input[name=action]", "sandbox.destroyed")
    page.click("#filter")
    page.wait_for_url("**/audit?*action=sandbox.destroyed*")
    texts = page.locator("#entries tbody tr td:nth-child(4)").all_inner_texts()
    assert texts and set(texts) == {"sandbox.destroyed"}  # one per sandbox of the run
    page.goto(console_url + "/runs")
    page.click("text=security timeline")
    assert page.locator("#timeline li.ev").count() > 5
    _shot(page, "no-js-timeline")
    context.close()
    assert os.listdir(ARTIFACTS)


def _stages(page: Page, version: int) -> str:
    return page.locator(f"#v-bot-{version} td.stages").inner_text()


def test_operator_promotes_after_a_passing_gate_rolls_back_and_revokes(
        browser: Browser, registry_console: tuple[str, RunWorkspace],
        lenient_gate_policy: Path, tmp_path: Path) -> None:
    url, run = registry_console
    context = browser.new_context()
    watch = Watch(context)
    page = context.new_page()
    _login(page, url, run.keys["operator"])
    page.click("header nav a:text-is('Registry')")
    assert _stages(page, 2) == "dev"
    # an operator is offered dev and staging, never prod (admin only)
    assert page.locator("#v-bot-3 select[name=stage] option").all_inner_texts() == [
        "dev", "staging"]
    assert page.locator("#model-bot ~ form select[name=stage] option").all_inner_texts() == [
        "dev", "staging"]  # rolling back prod is admin only too
    # promote without a passing gate report: refused, nothing changed
    page.select_option("#v-bot-3 select[name=stage]", "staging")
    page.click("#v-bot-3 button.promote")
    assert page.locator("#error").is_visible() and "gate: bot@v3" in page.inner_text("main")
    _shot(page, "registry-gate-refused")
    page.goto(url + "/registry")
    assert _stages(page, 3) == "-"
    # the release gate passes for the version's exact digest ('sealtune assess' on the model
    # the versions were registered from, as a user does on the command line)
    (model,) = [p.name for p in (run.home / "models").iterdir()
                if not p.name.startswith(".")]  # not the builds' .lock
    gate = subprocess.run([sys.executable, "-m", "sealtune", "assess", model, "--policy",
                           str(lenient_gate_policy), "--out", str(tmp_path / "gate")],
                          env=run.env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert gate.returncode == 0, gate.stdout[-2000:] + gate.stderr[-2000:]
    # the signed report on the Gate reports page, and the report itself (its own CSP)
    page.click("header nav a:text-is('Gate reports')")
    assert page.locator("#gates tbody tr td.ok").all_inner_texts() == ["PASS"]
    page.click("text=report with plots")
    page.wait_for_load_state()
    assert "model_files" in page.inner_text("body")
    watch.collect(page)
    _shot(page, "gate-report")
    page.goto(url + "/registry")
    page.select_option("#v-bot-3 select[name=stage]", "staging")
    page.click("#v-bot-3 button.promote")
    page.wait_for_url(url + "/registry")
    assert _stages(page, 3) == "staging" and _stages(page, 2) == "dev"
    page.select_option("#model-bot ~ form select[name=stage]", "dev")
    page.click("button.rollback")
    page.wait_for_url(url + "/registry")
    assert _stages(page, 1) == "dev"
    page.fill("#v-bot-1 input[name=reason]", "planted ticket id in outputs")
    page.click("#v-bot-1 button.revoke")
    page.wait_for_url(url + "/registry")
    assert page.locator("#v-bot-1 td.revoked").inner_text().startswith("yes: planted ticket")
    assert page.locator("#v-bot-1 button").count() == 0  # a revoked version has no actions
    _shot(page, "registry-operator")
    # a forged CSRF token on a state change is refused, nothing changed
    page.evaluate("document.querySelector('#v-bot-2 button.revoke').form.csrf_token.value"
                  " = 'forged'")
    page.fill("#v-bot-2 input[name=reason]", "forged")
    page.click("#v-bot-2 button.revoke")
    assert page.locator("#error").inner_text().startswith("missing or wrong CSRF token")
    page.goto(url + "/registry")
    assert page.locator("#v-bot-2 td.revoked").inner_text() == "no"
    watch.collect(page)
    # the ledger links the promotion to the signed gate report that allowed it
    envelope = (tmp_path / "gate" / "report.dsse.json").read_bytes()
    r = page.request.get(url + "/api/v1/audit/entries?action=registry.promote&limit=100",
                         headers={"Authorization": f"Bearer {run.keys['auditor']}"})
    gates = [e["details"].get("gate_report") for e in r.json()]
    assert gates[-1] == "sha256:" + hashlib.sha256(envelope).hexdigest()
    context.close()
    context = browser.new_context()
    consumer = Watch(context)
    page = context.new_page()
    _login(page, url, run.keys["consumer"])
    page.goto(url + "/registry")
    assert page.locator("#v-bot-3").count() == 1 and page.locator("main button").count() == 0
    assert page.locator("main form").count() == 0
    bearer = {"Authorization": f"Bearer {run.keys['consumer']}"}
    for path, data in (("versions/3/revoke", {"reason": "x"}),
                       ("versions/2/promote", {"stage": "staging"})):
        r = page.request.post(f"{url}/api/v1/registry/models/bot/{path}", data=data,
                              headers=bearer)
        assert r.status == 403 and r.json()["error"]["code"] == "role_forbidden"
    _shot(page, "registry-consumer")
    consumer.collect(page)
    context.close()
    assert watch.violations == [] and consumer.violations == []
