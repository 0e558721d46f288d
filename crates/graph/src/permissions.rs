//! The application permission each read needs (least privilege, said plainly): a read Graph
//! refuses with 403 leaves its fact unknown, and the error names the permission to grant.

use wbd_wire::GraphReport;

/// Every read, the Graph request it makes, and the application permission it needs.
pub const READS: [(&str, &str, &str); 7] = [
    ("subscribedSkus", "GET /v1.0/subscribedSkus", "Organization.Read.All"),
    ("organization", "GET /v1.0/organization", "Organization.Read.All"),
    ("authorizationPolicy", "GET /v1.0/policies/authorizationPolicy", "Policy.Read.All"),
    (
        "userRegistrationDetails",
        "GET /v1.0/reports/authenticationMethods/userRegistrationDetails",
        "AuditLog.Read.All",
    ),
    (
        "roleAssignments",
        "GET /v1.0/roleManagement/directory/roleAssignments",
        "RoleManagement.Read.Directory",
    ),
    ("users", "GET /v1.0/users/{id} (admins' onPremisesSyncEnabled)", "User.Read.All"),
    ("domains", "GET /v1.0/domains/{id} (admins' domains' authenticationType)", "Domain.Read.All"),
];

/// The application permissions the reader needs, each once, in a stable order.
pub fn required_permissions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for (_, _, permission) in READS {
        if !all.contains(&permission) {
            all.push(permission);
        }
    }
    all
}

/// The permission a call (as named in [`wbd_wire::GraphCallError::call`]) needs. Role reads are
/// named `roleAssignments:<role>`; a user lookup during them `users:<id>`.
pub fn permission_for(call: &str) -> Option<&'static str> {
    let base = call.split(':').next().unwrap_or(call);
    READS.iter().find(|(name, _, _)| *name == base).map(|(_, _, p)| *p)
}

/// The permissions a report's 403 answers say the app lacks, each once.
pub fn missing_permissions(report: &GraphReport) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for e in report.errors.iter().filter(|e| e.status == Some(403)) {
        if let Some(p) = permission_for(&e.call)
            && !missing.contains(&p)
        {
            missing.push(p);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_read_names_its_permission() {
        assert_eq!(permission_for("authorizationPolicy"), Some("Policy.Read.All"));
        assert_eq!(
            permission_for("roleAssignments:Global Administrator"),
            Some("RoleManagement.Read.Directory")
        );
        assert_eq!(permission_for("users:u-1"), Some("User.Read.All"));
        assert_eq!(permission_for("domains:contoso.com"), Some("Domain.Read.All"));
        assert_eq!(permission_for("userRegistrationDetails:admins"), Some("AuditLog.Read.All"));
        assert_eq!(permission_for("somethingElse"), None);
        assert_eq!(
            required_permissions(),
            vec![
                "Organization.Read.All",
                "Policy.Read.All",
                "AuditLog.Read.All",
                "RoleManagement.Read.Directory",
                "User.Read.All",
                "Domain.Read.All"
            ]
        );
    }
}
