-- The tenant's facts_version at which each probe last reported (from any of its collectors).
-- Flap damping counts an evaluation towards a rule's streak only when a probe the rule reads
-- reported since the last evaluation: a probe run every few hours (idle connections) is not
-- counted again at each five-minute push of another probe. Written by every ingest (one row per
-- probe of the batch), read with the tenant's snapshot.
CREATE TABLE probe_versions (
    tenant_id     BLOB    NOT NULL,
    probe         TEXT    NOT NULL,
    org_id        BLOB    NOT NULL,
    facts_version INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, probe)
);
-- What the facts already say: each probe reported at most at the tenant's current version (as
-- good as "not new" for a tenant already evaluated; new for one that is not).
INSERT INTO probe_versions (tenant_id, probe, org_id, facts_version)
SELECT DISTINCT f.tenant_id, f.probe, f.org_id, t.facts_version
FROM facts f JOIN tenants t ON t.id = f.tenant_id;
