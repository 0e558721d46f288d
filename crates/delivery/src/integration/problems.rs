//! What is wrong with an integration, field by field: every problem is listed at once.

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// `name`, `config.board`, `filter.tenant_ids[2]` …
    pub field: String,
    pub detail: String,
}

/// Every problem of a draft: invalid values, and destinations the network policy refuses. Each
/// is listed once, however often it is found.
#[derive(Debug, Default)]
pub struct Problems {
    invalid: Vec<FieldProblem>,
    refused: Vec<FieldProblem>,
}

impl Problems {
    /// One problem: an invalid value.
    pub fn one(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut problems = Problems::default();
        problems.invalid(field, detail);
        problems
    }

    pub fn invalid(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        let p = FieldProblem { field: field.into(), detail: detail.into() };
        if !self.invalid.contains(&p) {
            self.invalid.push(p);
        }
    }

    /// A destination the network policy refuses.
    pub fn refused(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        let p = FieldProblem { field: field.into(), detail: detail.into() };
        if !self.refused.contains(&p) {
            self.refused.push(p);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.invalid.is_empty() && self.refused.is_empty()
    }

    /// Whether refused destinations are the only problems (there is at least one).
    pub fn only_destinations_refused(&self) -> bool {
        self.invalid.is_empty() && !self.refused.is_empty()
    }

    /// Every problem: invalid values first, then refused destinations.
    pub fn iter(&self) -> impl Iterator<Item = &FieldProblem> {
        self.invalid.iter().chain(&self.refused)
    }

    /// `Ok` when there is none.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for Problems {
    /// `name is required; url 10.0.0.5 is a private address`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {}", p.field, p.detail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_is_listed_once_invalid_values_first() {
        let mut only_refused = Problems::default();
        only_refused.refused("url", "10.0.0.5 is a private address");
        assert!(only_refused.only_destinations_refused());

        let mut both = Problems::default();
        both.refused("url", "10.0.0.5 is a private address");
        both.invalid("name", "is required");
        both.invalid("name", "is required");
        assert!(!both.only_destinations_refused());
        assert_eq!(both.iter().count(), 2);
        assert_eq!(both.to_string(), "name is required; url 10.0.0.5 is a private address");
        assert!(Problems::default().into_result().is_ok());
        assert!(!Problems::default().only_destinations_refused());
    }
}
