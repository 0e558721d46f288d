-- The central Graph reader reads the tenant's test user (its userRegistrationDetails) as a
-- collector's probe reads `probes.graph.test_user`: the user's UPN, set per connected tenant
-- (PUT /v1/tenants/{id}/graph/test-user); NULL: none.
ALTER TABLE graph_connections ADD COLUMN test_user TEXT;
