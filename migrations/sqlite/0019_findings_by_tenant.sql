-- A tenant's findings are always read with its organisation as well (`tenant_id = $1 AND
-- org_id = $2 ORDER BY id`: the evaluation's snapshot, the API's lists). With one index per
-- column, PostgreSQL's planner combined both (a BitmapAnd) until the table had statistics, and
-- read every finding of the organisation to find one tenant's: for an MSP with 200 tenants,
-- thousands of index entries per evaluation. One index on both, in the order they narrow,
-- answers such a read alone and in `id` order.
CREATE INDEX findings_tenant_org_idx ON findings (tenant_id, org_id, id);
DROP INDEX findings_tenant_idx;
