//! Rule parameters: their declared types and defaults (from the pack's metadata), and the
//! resolved values a rule reads while it runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of a parameter, with its bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParamKind {
    /// A whole number within `min..=max`.
    Integer {
        min: i64,
        max: i64,
    },
    Boolean,
    /// A dotted version such as `2.5.79.0` (one to four numeric parts).
    Version,
    /// Free text of at most `max_len` characters.
    String {
        max_len: usize,
    },
    /// A list of strings, each at most `max_len` characters, at most `max_items` of them.
    StringList {
        max_items: usize,
        max_len: usize,
    },
}

impl ParamKind {
    /// The type's name in errors and the API.
    pub fn name(&self) -> &'static str {
        match self {
            ParamKind::Integer { .. } => "integer",
            ParamKind::Boolean => "boolean",
            ParamKind::Version => "version",
            ParamKind::String { .. } => "string",
            ParamKind::StringList { .. } => "string_list",
        }
    }

    /// Checks `value` against the type; the error says what is wrong, without the field name.
    pub fn check(&self, value: &Value) -> Result<(), ParamProblem> {
        let wrong = || ParamProblem::WrongType { expected: self.name() };
        match self {
            ParamKind::Integer { min, max } => {
                let n = value.as_i64().ok_or_else(wrong)?;
                if n < *min || n > *max {
                    return Err(ParamProblem::OutOfRange { min: *min, max: *max, got: n });
                }
            }
            ParamKind::Boolean => {
                value.as_bool().ok_or_else(wrong)?;
            }
            ParamKind::Version => {
                let s = value.as_str().ok_or_else(wrong)?;
                if DottedVersion::parse(s).is_none() {
                    return Err(ParamProblem::Invalid { why: "not a dotted version such as 2.5.79.0" });
                }
            }
            ParamKind::String { max_len } => {
                let s = value.as_str().ok_or_else(wrong)?;
                if s.chars().count() > *max_len {
                    return Err(ParamProblem::TooLong { max: *max_len });
                }
            }
            ParamKind::StringList { max_items, max_len } => {
                let items = value.as_array().ok_or_else(wrong)?;
                if items.len() > *max_items {
                    return Err(ParamProblem::TooManyItems { max: *max_items });
                }
                for item in items {
                    let s = item.as_str().ok_or_else(wrong)?;
                    if s.chars().count() > *max_len {
                        return Err(ParamProblem::TooLong { max: *max_len });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why a parameter value is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ParamProblem {
    WrongType { expected: &'static str },
    OutOfRange { min: i64, max: i64, got: i64 },
    TooLong { max: usize },
    TooManyItems { max: usize },
    Invalid { why: &'static str },
}

impl std::fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamProblem::WrongType { expected } => write!(f, "expected a value of type {expected}"),
            ParamProblem::OutOfRange { min, max, got } => {
                write!(f, "{got} is out of range (allowed {min} to {max})")
            }
            ParamProblem::TooLong { max } => write!(f, "longer than {max} characters"),
            ParamProblem::TooManyItems { max } => write!(f, "more than {max} items"),
            ParamProblem::Invalid { why } => f.write_str(why),
        }
    }
}

/// A parameter a rule declares in the pack metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamSpec {
    /// Snake-case name, the key in overrides.
    pub name: &'static str,
    #[serde(flatten)]
    pub kind: ParamKind,
    pub default: Value,
    /// What the parameter changes, in the language of the [`RuleInfo`](crate::RuleInfo).
    pub description: &'static str,
}

/// The values a rule runs with: every declared parameter, defaults overlaid with valid
/// overrides. Built by [`evaluate_with`](crate::evaluate_with); rules only read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    values: Vec<(&'static str, Value)>,
}

impl Params {
    /// The defaults of `specs`.
    #[cfg(test)]
    pub(crate) fn defaults(specs: &'static [ParamSpec]) -> Self {
        Params { values: specs.iter().map(|s| (s.name, s.default.clone())).collect() }
    }

    /// Defaults overlaid with the override values that pass their type check; an invalid
    /// override is ignored (settings are validated when saved, so this only happens after a
    /// parameter's type changed).
    pub(crate) fn resolve(specs: &'static [ParamSpec], overrides: &serde_json::Map<String, Value>) -> Self {
        let values = specs
            .iter()
            .map(|spec| {
                let value = match overrides.get(spec.name) {
                    Some(v) if spec.kind.check(v).is_ok() => v.clone(),
                    _ => spec.default.clone(),
                };
                (spec.name, value)
            })
            .collect();
        Params { values }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        let found = self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        debug_assert!(found.is_some(), "a rule reads the undeclared parameter {name}");
        found
    }

    /// An integer parameter (0 if undeclared, which the pack's tests rule out).
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).and_then(Value::as_i64).unwrap_or_default()
    }

    pub fn bool(&self, name: &str) -> bool {
        self.get(name).and_then(Value::as_bool).unwrap_or_default()
    }

    pub fn str(&self, name: &str) -> &str {
        self.get(name).and_then(Value::as_str).unwrap_or_default()
    }

    pub fn version(&self, name: &str) -> DottedVersion {
        DottedVersion::parse(self.str(name)).unwrap_or_default()
    }

    pub fn strings(&self, name: &str) -> impl Iterator<Item = &str> {
        self.get(name).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
    }
}

/// A Windows-style dotted version (`2.5.79.0`), compared part by part; missing parts count as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DottedVersion(pub [u32; 4]);

impl DottedVersion {
    /// Reads one to four dot-separated numbers; anything else (letters, five parts, empty) is
    /// `None`. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = [0u32; 4];
        for (index, piece) in s.trim().split('.').enumerate() {
            if index == 4 || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts[index] = piece.parse().ok()?;
        }
        Some(DottedVersion(parts))
    }

    pub fn major(self) -> u32 {
        self.0[0]
    }
}

impl std::fmt::Display for DottedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_compare_part_by_part() {
        let v = |s| DottedVersion::parse(s).expect(s);
        assert!(v("2.5.79.0") > v("2.5.76.0"));
        assert!(v("2.10.0.0") > v("2.9.99.99"));
        assert_eq!(v("2.5"), v("2.5.0.0"));
        assert_eq!(v(" 1.6.4.0 ").to_string(), "1.6.4.0");
        for bad in ["", "2..1", "2.5.79.0.1", "v2.5", "2.5.x"] {
            assert_eq!(DottedVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn kinds_check_values() {
        let int = ParamKind::Integer { min: 1, max: 10 };
        assert!(int.check(&json!(5)).is_ok());
        assert_eq!(int.check(&json!(11)), Err(ParamProblem::OutOfRange { min: 1, max: 10, got: 11 }));
        assert_eq!(int.check(&json!("5")), Err(ParamProblem::WrongType { expected: "integer" }));
        assert_eq!(int.check(&json!(5.5)), Err(ParamProblem::WrongType { expected: "integer" }));
        assert!(ParamKind::Version.check(&json!("2.5.79.0")).is_ok());
        assert!(ParamKind::Version.check(&json!("latest")).is_err());
        let list = ParamKind::StringList { max_items: 2, max_len: 3 };
        assert!(list.check(&json!(["a", "b"])).is_ok());
        assert_eq!(list.check(&json!(["a", "b", "c"])), Err(ParamProblem::TooManyItems { max: 2 }));
        assert_eq!(list.check(&json!(["abcd"])), Err(ParamProblem::TooLong { max: 3 }));
        assert!(ParamKind::Boolean.check(&json!(1)).is_err());
    }
}
