// The data the browser walk needs, made through the REST API of the server .ci/console started
// (the organisation itself comes from `wbd-api bootstrap`, as the README does it).
//
//   node setup.mjs tenants            -> prints: <read-only key> <tenant id> <enrollment token>
//   node setup.mjs finding <tenant>   -> waits for the tenant's finding, prints its id
const base = process.env.WBD_BASE;
const adminKey = process.env.WBD_ADMIN_KEY;

async function call(path, body, token) {
  const init = { method: body === undefined ? "GET" : "POST", headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  if (token) init.headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, init);
  if (!res.ok) throw new Error(`${init.method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function until(what, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      const found = await what();
      if (found) return found;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    if (Date.now() > deadline) throw new Error(`gave up waiting after ${seconds} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const login = async (key) => (await call("/v1/auth/token", { api_key: key })).access_token;

const step = process.argv[2];
await until(() => call("/healthz"), 20);
const admin = await login(adminKey);
if (step === "tenants") {
  const reader = (await call("/v1/api-keys", { name: "customer IT", role: "read_only" }, admin)).key;
  const tenant = (await call("/v1/tenants", { name: "Contoso" }, admin)).id;
  // Others for the overview, one with a name that must come out escaped.
  for (const name of ["Fabrikam", "Tailspin Toys", "<script>alert(1)</script> Ltd"]) {
    await call("/v1/tenants", { name }, admin);
  }
  // A webhook to send a test to (the test is queued; this walk does not wait for its delivery).
  await call("/v1/integrations", { name: "SIEM", kind: "webhook", url: "https://siem.example.com/wbd" }, admin);
  const collector = await call(`/v1/tenants/${tenant}/collectors`, { name: "Contoso AADC01" }, admin);
  console.log(reader, tenant, collector.enrollment_token);
} else if (step === "finding") {
  const tenant = process.argv[3];
  const items = await until(async () => {
    const page = await call(`/v1/findings?tenant_id=${tenant}&rule_id=endpoint-reachable`, undefined, admin);
    return page.items.length > 0 ? page.items : null;
  }, 30);
  console.log(items[0].id);
} else {
  throw new Error(`unknown step ${step}`);
}
