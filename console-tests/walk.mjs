// The console in a real browser: Playwright (playwright-core: no browser download) drives the
// machine's chromium headless through sign-in, the overview, a tenant, the language picker, a
// finding, acknowledge and suppress, a write from another origin, a new collector, an
// integration test send and its delivery log, a new integration (refused first), a custom rule
// with an error at its line and column and a dry run, a rule setting for a tenant, sign-out, a
// read-only user.
// axe-core checks each page (no serious or critical violation), and the browser's console is
// watched for Content-Security-Policy violations and script errors. Screenshots go to
// $ARTIFACTS. Started by .ci/console, which makes the server and its data.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run .ci/console)`);
  return value;
};
const base = env("WBD_BASE");
const adminKey = env("WBD_ADMIN_KEY");
const readerKey = env("WBD_READER_KEY");
const finding = env("WBD_FINDING");
const artifacts = env("ARTIFACTS");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(artifacts, { recursive: true });

const problems = [];
const audits = {};
const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
};
const path = (page) => new URL(page.url()).pathname;

/// Records what the browser complains about: CSP violations and script errors fail the walk.
function watch(page, label) {
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy|Refused to/i.test(msg.text())) {
      problems.push(`${label}: ${msg.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`${label}: script error ${error.message}`));
}

async function shot(page, name) {
  await page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
}

/// axe-core on the page as it is: serious and critical violations fail the walk.
async function audit(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (the page
  // itself may run no inline script).
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  audits[name] = result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  for (const v of result.violations) {
    const line = `${name}: axe ${v.impact} ${v.id} (${v.help}) on ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`;
    if (v.impact === "serious" || v.impact === "critical") problems.push(line);
    else console.log(`  note: ${line}`);
  }
}

async function submit(page, button, url) {
  await Promise.all([page.waitForURL(url), button.click()]);
}

const started = Date.now();
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  // A Polish browser: the language picker starts from Accept-Language.
  const context = await browser.newContext({ locale: "pl-PL", viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  watch(page, "admin");

  console.log("sign-in");
  await page.goto(`${base}/`);
  check(path(page) === "/sign-in", `signed out, / leads to the sign-in page (at ${page.url()})`);
  await audit(page, "sign-in");
  await shot(page, "01-sign-in");
  await page.getByLabel("API key").fill("wbdk_not-a-key");
  await page.getByRole("button", { name: "Sign in" }).click();
  check((await page.getByRole("alert").textContent()).includes("unknown or was revoked"), "a bad key is refused");
  await page.getByLabel("API key").fill(adminKey);
  await submit(page, page.getByRole("button", { name: "Sign in" }), `${base}/`);

  console.log("overview");
  check((await page.getByRole("heading", { level: 1 }).textContent()) === "Tenants", "the overview's heading");
  const rows = page.locator("tbody tr");
  check((await rows.count()) === 4, `four tenants listed (${await rows.count()})`);
  check((await rows.first().locator("th a").textContent()) === "Contoso", "the tenant with a finding comes first");
  check((await page.getByRole("link", { name: "<script>alert(1)</script> Ltd" }).count()) === 1, "a name with markup is text");
  await audit(page, "overview");
  await shot(page, "02-overview");
  await page.getByLabel("Name").fill("tail");
  await submit(page, page.getByRole("button", { name: "Show" }), /q=tail/);
  check((await rows.count()) === 1 && (await rows.first().locator("th a").textContent()) === "Tailspin Toys", "search");
  // The status filter submits itself when it changes (our script).
  await page.getByLabel("Name").fill("");
  await Promise.all([page.waitForURL(/status=unknown/), page.getByLabel("Health").selectOption("unknown")]);
  check((await rows.count()) === 3, `three tenants without data (${await rows.count()})`);
  await page.goto(`${base}/`);

  console.log("tenant");
  await submit(page, page.getByRole("link", { name: "Contoso", exact: true }), /\/tenants\//);
  check((await page.locator("#lang-picker").inputValue()) === "pl", "Accept-Language pl picks Polish");
  check((await page.locator("article.finding h3").first().getAttribute("lang")) === "pl", "the finding's texts are Polish");
  check((await page.getByRole("button", { name: "Wyloguj" }).count()) === 1, "the layout is Polish");
  await audit(page, "tenant (Polish)");
  await shot(page, "03-tenant-pl");
  await Promise.all([page.waitForURL(/lang=uk/), page.locator("#lang-picker").selectOption("uk")]);
  check((await page.locator("article.finding h3").first().getAttribute("lang")) === "uk", "switched to Ukrainian");
  check((await page.getByRole("link", { name: "Інтеграції" }).count()) === 1, "the layout is Ukrainian");
  await shot(page, "04-tenant-uk");
  await Promise.all([page.waitForURL(/lang=en/), page.locator("#lang-picker").selectOption("en")]);
  check((await page.locator("#lang-picker").inputValue()) === "en", "switched to English");
  check((await page.getByRole("button", { name: "Sign out" }).count()) === 1, "the layout is English");
  await audit(page, "tenant (English)");
  await shot(page, "05-tenant-en");

  console.log("finding: acknowledge, suppress");
  await submit(page, page.locator(`article.finding h3 a[href="/findings/${finding}"]`), new RegExp(`/findings/${finding}$`));
  check((await page.locator("#lang-picker").inputValue()) === "en", "the language is remembered");
  await audit(page, "finding");
  await shot(page, "06-finding");
  await page.getByLabel("What you are doing about it").fill("Opening the firewall to the Service Bus relay");
  await submit(page, page.getByRole("button", { name: "Acknowledge", exact: true }), /done=acknowledge/);
  check((await page.getByRole("status").textContent()).includes("Acknowledged"), "acknowledged");
  const until = new Date(Date.now() + 7 * 86400e3).toISOString().slice(0, 10);
  await page.getByLabel("Why it is accepted for now").fill("Change window on Friday");
  await page.getByLabel("Until").fill(until);
  await submit(page, page.getByRole("button", { name: "Suppress", exact: true }), /done=suppress/);
  check((await page.locator("dl.facts").textContent()).includes("Change window on Friday"), "suppressed with its reason");
  const history = await page.locator("table").last().textContent();
  check(history.includes("acknowledged") && history.includes("suppressed"), "the history shows both");
  await audit(page, "finding (suppressed)");
  await shot(page, "07-suppressed");

  console.log("a write from another origin");
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const forged = await context.request.post(`${base}/findings/${finding}/unsuppress`, {
    form: { csrf },
    headers: { origin: "https://evil.example", "sec-fetch-site": "cross-site" },
    maxRedirects: 0,
  });
  check(forged.status() === 403, `a cross-site write is refused (${forged.status()})`);
  await page.reload();
  check((await page.getByRole("button", { name: "Unsuppress" }).count()) === 1, "still suppressed");

  console.log("a new collector and its enrollment command");
  await page.goto(`${base}/tenants/${env("WBD_TENANT")}`);
  await page.getByLabel("New collector's name").fill("Contoso AADC02");
  await page.getByRole("button", { name: "Add a collector" }).click();
  await page.getByRole("heading", { level: 1, name: /created/ }).waitFor();
  check((await page.locator("pre code").textContent()).startsWith("wbd-collector enroll --server "), "the command");
  await audit(page, "collector created");
  await shot(page, "08-collector-created");

  console.log("integrations: a test send and its delivery log");
  await submit(page, page.getByRole("link", { name: "Integrations" }), `${base}/integrations`);
  await submit(page, page.getByRole("button", { name: "Send a test to SIEM" }), /done=tested/);
  check((await page.getByRole("status").textContent()).includes("A test event is on its way"), "the test is queued");
  check((await page.locator("table").last().textContent()).includes("integration.test"), "the delivery log lists it");
  await audit(page, "integration");
  await shot(page, "09-integration-log");
  await submit(page, page.getByRole("link", { name: "integration.test" }).first(), /\/deliveries\//);
  check((await page.getByRole("heading", { level: 2, name: /Every attempt/ }).count()) === 1, "the delivery's attempts");
  await audit(page, "delivery");
  await shot(page, "10-delivery");

  console.log("integrations: add one, a refused form first");
  await page.goto(`${base}/integrations`);
  await submit(page, page.getByRole("link", { name: "Add an integration" }), `${base}/integrations/new`);
  // The kind picker submits itself (our script); without script its button does.
  await Promise.all([page.waitForURL(/kind=jira/), page.locator("#integration-kind").selectOption("jira")]);
  await page.locator("#integration-name").fill("Service desk");
  await page.locator("#integration-url").fill("https://contoso.atlassian.net");
  await page.locator("#integration-config").fill('{ "email": "bot@contoso.example", "project_key": "WBD" }');
  await page.getByRole("button", { name: "Add the integration" }).click();
  await page.getByRole("alert").waitFor();
  check((await page.locator("#credential-api_token-problem").count()) === 1, "the missing token is shown at its field");
  check((await page.locator("#credential-api_token").getAttribute("aria-invalid")) === "true", "the field is marked");
  await audit(page, "integration refused");
  await shot(page, "11-integration-refused");
  await page.locator("#credential-api_token").fill("jira-token-s3cret");
  await submit(page, page.getByRole("button", { name: "Add the integration" }), /done=created/);
  check((await page.getByRole("status").textContent()).includes("The integration was added"), "added");
  check((await page.locator("#credential-api_token").inputValue()) === "", "a stored secret is never shown");
  check(!(await page.content()).includes("jira-token-s3cret"), "nor anywhere in the page");
  await audit(page, "integration added");
  await shot(page, "12-integration-added");

  console.log("custom rules: an error at its line and column, a dry run, save");
  await submit(page, page.getByRole("link", { name: "Custom rules" }), `${base}/custom-rules`);
  await page.locator("#rule-id").fill("non-standard-port");
  await page.locator("#rule-title").fill("Non-standard port");
  await page.locator("#rule-condition").fill("facts.endpoint.exists(e,\n  e.prot != 443)");
  await page.getByRole("button", { name: "Dry run on every tenant" }).click();
  await page.getByRole("alert").waitFor();
  check((await page.locator("#rule-condition-problem").textContent()).includes("Line 2, column"), "line and column");
  await audit(page, "custom rule refused");
  await shot(page, "13-custom-rule-error");
  await page.locator("#rule-condition").fill("facts.endpoint.exists(e, e.port != 443)");
  await page.getByRole("button", { name: "Dry run on every tenant" }).click();
  await page.getByRole("heading", { level: 2, name: /Dry run:/ }).waitFor();
  await audit(page, "custom rule dry run");
  await shot(page, "14-custom-rule-dry-run");
  await submit(page, page.getByRole("button", { name: "Save the rule" }), /saved=non-standard-port/);
  check((await page.getByRole("status").textContent()).includes("was saved"), "saved");

  console.log("rule settings on the tenant page");
  await page.goto(`${base}/tenants/${env("WBD_TENANT")}`);
  check((await page.getByRole("heading", { name: "Microsoft Graph connection" }).count()) === 1, "the Graph section");
  check((await page.locator("main").textContent()).includes("no Microsoft Graph app configured"), "says Graph is not set up");
  await page.locator("#rule-endpoint-reachable summary").click();
  await page.locator("#severity-endpoint-reachable").selectOption("low");
  await submit(page, page.locator("#rule-endpoint-reachable").getByRole("button", { name: "Save for this tenant" }), /done=saved/);
  check((await page.locator("#rule-endpoint-reachable").textContent()).includes("severity low"), "the override is listed");
  await audit(page, "tenant rule settings");
  await shot(page, "15-rule-settings");

  console.log("sign-out");
  await submit(page, page.getByRole("button", { name: "Sign out" }), `${base}/sign-in`);
  await page.goto(`${base}/findings/${finding}`);
  check(path(page) === "/sign-in", "signed out, the finding leads to the sign-in page");
  await shot(page, "16-signed-out");

  console.log("read-only");
  const readOnly = await browser.newContext({ locale: "en-GB", viewport: { width: 1280, height: 900 } });
  const reader = await readOnly.newPage();
  watch(reader, "read-only");
  await reader.goto(`${base}/sign-in`);
  await reader.getByLabel("API key").fill(readerKey);
  await submit(reader, reader.getByRole("button", { name: "Sign in" }), `${base}/`);
  await reader.goto(`${base}/findings/${finding}`);
  for (const name of ["Acknowledge", "Suppress", "Unsuppress", "Re-test now"]) {
    check((await reader.getByRole("button", { name, exact: true }).count()) === 0, `no ${name} for read-only`);
  }
  await audit(reader, "finding (read-only)");
  await shot(reader, "17-read-only");
  await reader.goto(`${base}/integrations`);
  check((await reader.getByRole("link", { name: "Add an integration" }).count()) === 0, "no adding for read-only");
  await submit(reader, reader.getByRole("link", { name: "SIEM" }), /\/integrations\//);
  check((await reader.locator("form[method=post]").count()) === 1, "only the sign-out form on an integration");
  await reader.goto(`${base}/custom-rules`);
  check((await reader.getByRole("button", { name: "Save the rule" }).count()) === 0, "no saving rules for read-only");
  await reader.goto(`${base}/tenants/${env("WBD_TENANT")}`);
  check((await reader.locator("form.rule-setting").count()) === 0, "no rule setting forms for read-only");
  const token = await reader.locator('input[name="csrf"]').first().inputValue();
  const refused = await readOnly.request.post(`${base}/findings/${finding}/unsuppress`, {
    form: { csrf: token },
    headers: { origin: base, "sec-fetch-site": "same-origin" },
    maxRedirects: 0,
  });
  check(refused.status() === 403, `a read-only write is refused (${refused.status()})`);
  check((await refused.text()).includes("Your role does not allow this"), "with a page that says why");
} catch (error) {
  problems.push(String(error.stack || error));
} finally {
  await browser.close();
}

writeFileSync(`${artifacts}/axe.json`, JSON.stringify(audits, null, 2));
const secs = ((Date.now() - started) / 1000).toFixed(1);
if (problems.length) {
  console.error(`\nthe console walk failed (${secs} s):\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
console.log(`\nthe console walk passed (${secs} s); screenshots in ${artifacts}`);
