//! The console's overview at MSP scale: one `wbd-api` with the worker inside (on SQLite, and on
//! PostgreSQL with its local queue) whose store holds 1,000
//! tenants with 20,000 open findings among them (filled straight through SQL after `bootstrap`),
//! a person signed in through the console's own form, and the overview's pages (`GET /?page=N`,
//! 50 tenants each) asked for one after another. Each request's time is the server's time plus
//! a loopback round trip (one client, no concurrency), so the figures are the server's work to
//! build a page from the store.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use sqlx::{PgPool, SqlitePool};

use crate::deploy::Deployment;
use crate::stats::{LatencySummary, Samples};

/// What to fill and how often to ask.
#[derive(Debug, Clone, Copy)]
pub struct OverviewLoad {
    pub tenants: usize,
    pub findings_per_tenant: usize,
    pub requests: usize,
}

/// Pages of the overview (50 tenants each).
const PAGE_SIZE: usize = 50;

#[derive(Debug, Clone)]
pub struct OverviewTimes {
    pub seed_time: Duration,
    pub first_page: Duration,
    pub pages: LatencySummary,
    pub wall: Duration,
}

/// Fills the deployment's store, signs in and times the overview's pages.
pub async fn measure(deployment: &Deployment, load: OverviewLoad) -> anyhow::Result<OverviewTimes> {
    let key = deployment.bootstrap("Console Benchmark MSP").await?;
    let seeded = Instant::now();
    seed(&deployment.env.database_url, load).await?;
    let seed_time = seeded.elapsed();
    let base = deployment.bases.first().context("the deployment has no API")?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let body = format!("api_key={key}");
    let res = client
        .post(format!("{base}/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    ensure!(res.status() == reqwest::StatusCode::SEE_OTHER, "sign-in answered {}", res.status());
    let cookie = res
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("sign-in set no cookie")?
        .to_owned();
    let pages = load.tenants.div_ceil(PAGE_SIZE).max(1);
    let get = |page: usize| {
        let (client, cookie) = (client.clone(), cookie.clone());
        let url = format!("{base}/?page={page}");
        async move {
            let started = Instant::now();
            let res = client.get(&url).header("cookie", cookie).send().await?;
            let status = res.status();
            let text = res.text().await?;
            let took = started.elapsed();
            if status != reqwest::StatusCode::OK || !text.contains("<h1>Tenants</h1>") {
                bail!("GET {url} answered {status}");
            }
            anyhow::Ok((took, text))
        }
    };
    // The first page, once, cold; it must list the tenants the store holds.
    let (first_page, text) = get(1).await?;
    ensure!(text.contains(&format!("of {pages}")), "the overview does not show {pages} pages");
    let started = Instant::now();
    let mut samples = Samples::new();
    for i in 0..load.requests {
        let (took, _) = get(1 + i % pages).await?;
        samples.push(took);
    }
    let wall = started.elapsed();
    let pages = samples.summary().context("no request was timed")?;
    Ok(OverviewTimes { seed_time, first_page, pages, wall })
}

/// 1,000 tenants and 20 open findings each, of every severity, through SQL (the rule ids are
/// real, so pages show their titles).
async fn seed(database_url: &str, load: OverviewLoad) -> anyhow::Result<()> {
    if database_url.starts_with("postgres") {
        return seed_postgres(database_url, load).await;
    }
    let pool = SqlitePool::connect(database_url).await?;
    let now = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";
    let sql = format!(
        "INSERT INTO tenants (id, org_id, name, created_at)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {tenants})
         SELECT randomblob(16), (SELECT id FROM organizations LIMIT 1), 'Tenant ' || printf('%04d', i), {now}
         FROM n",
        tenants = load.tenants,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.context("filling tenants")?;
    let sql = format!(
        "INSERT INTO findings (id, org_id, tenant_id, fingerprint, rule_id, subject, severity, status, title,
                               summary, evidence, opened_at, updated_at, version)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {per_tenant})
         SELECT randomblob(16), t.org_id, t.id, 'bench-' || n.i, 'endpoint-reachable', 'host-' || n.i,
                CASE n.i % 4 WHEN 0 THEN 'critical' WHEN 1 THEN 'high' WHEN 2 THEN 'medium' ELSE 'low' END,
                'open', 'An endpoint is not reachable', 'Benchmark finding', '{{}}', {now}, {now}, 1
         FROM tenants t CROSS JOIN n",
        per_tenant = load.findings_per_tenant,
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.context("filling findings")?;
    ensure!(
        done.rows_affected() as usize == load.tenants * load.findings_per_tenant,
        "filled {} findings",
        done.rows_affected()
    );
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

async fn seed_postgres(database_url: &str, load: OverviewLoad) -> anyhow::Result<()> {
    let pool = PgPool::connect(database_url).await?;
    let sql = format!(
        "INSERT INTO tenants (id, org_id, name, created_at)
         SELECT gen_random_uuid(), (SELECT id FROM organizations LIMIT 1), 'Tenant ' || lpad(i::text, 4, '0'), now()
         FROM generate_series(1, {tenants}) AS i",
        tenants = load.tenants,
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.context("filling tenants")?;
    let sql = format!(
        "INSERT INTO findings (id, org_id, tenant_id, fingerprint, rule_id, subject, severity, status, title,
                               summary, evidence, opened_at, updated_at, version)
         SELECT gen_random_uuid(), t.org_id, t.id, 'bench-' || i, 'endpoint-reachable', 'host-' || i,
                CASE i % 4 WHEN 0 THEN 'critical' WHEN 1 THEN 'high' WHEN 2 THEN 'medium' ELSE 'low' END,
                'open', 'An endpoint is not reachable', 'Benchmark finding', '{{}}'::jsonb, now(), now(), 1
         FROM tenants t CROSS JOIN generate_series(1, {per_tenant}) AS i",
        per_tenant = load.findings_per_tenant,
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.context("filling findings")?;
    ensure!(
        done.rows_affected() as usize == load.tenants * load.findings_per_tenant,
        "filled {} findings",
        done.rows_affected()
    );
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(())
}
