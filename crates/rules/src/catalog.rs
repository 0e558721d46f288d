//! The pack's metadata and texts, read once from the data files embedded in the crate.
//!
//! - `packs/writeback/pack.toml`: one `[[rule]]` per rule, in evaluation order, with what does
//!   not depend on the language: id, default severity, probe kinds read, parameters (type,
//!   bounds, default), flap damping, catalogue ids, seed checklist points, documentation links.
//! - `packs/writeback/{en,pl,uk}.toml`: per language, each rule's title (the check), problem
//!   (what a failure is called: a finding's title), description,
//!   remediation steps, parameter descriptions and message templates, and the shared
//!   `[messages]`.
//!
//! The files are part of the build (`include_str!`): the tests in this module refuse a pack with
//! a missing or extra text, a placeholder a language invents, or a parameter whose default does
//! not pass its own type. Parsing happens once, on first use.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;
use wbd_wire::ProbeKind;

use crate::evaluation::FlapDamping;
use crate::message::Lang;
use crate::params::{ParamKind, ParamSpec};
use crate::{RuleInfo, Severity};

const PACK_TOML: &str = include_str!("../packs/writeback/pack.toml");
const EN_TOML: &str = include_str!("../packs/writeback/en.toml");
const PL_TOML: &str = include_str!("../packs/writeback/pl.toml");
const UK_TOML: &str = include_str!("../packs/writeback/uk.toml");

fn source(lang: Lang) -> &'static str {
    match lang {
        Lang::En => EN_TOML,
        Lang::Pl => PL_TOML,
        Lang::Uk => UK_TOML,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PackFile {
    pub rule: Vec<RuleMeta>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleMeta {
    pub id: String,
    pub severity: Severity,
    #[serde(default)]
    pub reads: Vec<ProbeKind>,
    /// Ids in the research catalogue (`PWB-…`), for traceability.
    #[serde(default)]
    pub catalogue: Vec<String>,
    /// Points (1–9) of the seed checklist this rule covers.
    #[serde(default)]
    pub seed_points: Vec<u8>,
    pub references: Vec<String>,
    pub flap: FlapDamping,
    /// Rules whose failure explains this one's (its root causes).
    #[serde(default)]
    pub explained_by: Vec<String>,
    #[serde(default)]
    pub params: Vec<ParamMeta>,
}

// No `deny_unknown_fields` here: serde does not support it together with `flatten`.
#[derive(Debug, Deserialize)]
pub(crate) struct ParamMeta {
    pub name: String,
    #[serde(flatten)]
    pub kind: ParamKind,
    pub default: toml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LangFile {
    pub messages: BTreeMap<String, String>,
    pub rules: BTreeMap<String, RuleTexts>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleTexts {
    /// Names the check: what should hold ("Writeback endpoint is reachable").
    pub title: String,
    /// Names the problem a failure reports ("Writeback endpoint is unreachable"): the title of
    /// a finding.
    pub problem: String,
    pub description: String,
    pub remediation: Vec<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub messages: BTreeMap<String, String>,
}

pub(crate) struct Catalog {
    /// Per language (index = position in [`Lang::ALL`]), the pack's metadata in pack order.
    infos: [Vec<RuleInfo>; 3],
    /// Per language, full message key → template.
    messages: [HashMap<String, String>; 3],
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| match build() {
    Ok(catalog) => catalog,
    // The files are compiled in and checked by this crate's tests: a failure here is a build
    // defect, like a syntax error, and must not be papered over with an empty pack.
    Err(error) => panic!("the embedded rule pack is invalid: {error}"),
});

fn lang_index(lang: Lang) -> usize {
    match lang {
        Lang::En => 0,
        Lang::Pl => 1,
        Lang::Uk => 2,
    }
}

pub(crate) fn infos(lang: Lang) -> &'static [RuleInfo] {
    &CATALOG.infos[lang_index(lang)]
}

pub(crate) fn message_template(lang: Lang, key: &str) -> Option<&'static str> {
    CATALOG.messages[lang_index(lang)].get(key).map(String::as_str)
}

/// Every message key a language defines (for the pack's tests).
#[cfg(test)]
pub(crate) fn message_keys(lang: Lang) -> Vec<&'static str> {
    let mut keys: Vec<_> = CATALOG.messages[lang_index(lang)].keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_slice<T>(items: Vec<T>) -> &'static [T] {
    Box::leak(items.into_boxed_slice())
}

pub(crate) fn parse_pack() -> Result<PackFile, String> {
    parse_pack_text(PACK_TOML)
}

/// Parses and checks a pack file's text (the shipped one, or one a test writes).
pub(crate) fn parse_pack_text(text: &str) -> Result<PackFile, String> {
    let pack: PackFile = toml::from_str(text).map_err(|e| format!("pack.toml: {e}"))?;
    validate_pack(&pack)?;
    Ok(pack)
}

/// Refuses what the TOML types cannot: a rule id used twice, and an `explained_by` that names
/// an unknown rule, the rule itself, or makes a cycle (two rules each explaining the other would
/// leave no root cause to show).
pub(crate) fn validate_pack(pack: &PackFile) -> Result<(), String> {
    let mut ids = std::collections::BTreeSet::new();
    for meta in &pack.rule {
        if !ids.insert(meta.id.as_str()) {
            return Err(format!("pack.toml: rule {} is declared twice", meta.id));
        }
    }
    let explained: HashMap<&str, &[String]> =
        pack.rule.iter().map(|meta| (meta.id.as_str(), meta.explained_by.as_slice())).collect();
    for meta in &pack.rule {
        for cause in &meta.explained_by {
            if cause == &meta.id {
                return Err(format!("pack.toml: rule {} lists itself in explained_by", meta.id));
            }
            if !ids.contains(cause.as_str()) {
                return Err(format!("pack.toml: rule {} is explained_by unknown rule {cause}", meta.id));
            }
        }
        // Depth-first from this rule's causes: meeting the rule again is a cycle.
        let mut stack: Vec<&str> = meta.explained_by.iter().map(String::as_str).collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(cause) = stack.pop() {
            if cause == meta.id {
                return Err(format!(
                    "pack.toml: explained_by of rule {} leads back to it (a cycle)",
                    meta.id
                ));
            }
            if seen.insert(cause) {
                stack.extend(explained.get(cause).into_iter().flat_map(|c| c.iter().map(String::as_str)));
            }
        }
    }
    Ok(())
}

pub(crate) fn parse_lang(lang: Lang) -> Result<LangFile, String> {
    toml::from_str(source(lang)).map_err(|e| format!("{lang}.toml: {e}"))
}

fn json_of(value: &toml::Value) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// Builds the catalogue. The strings live as long as the process (the catalogue is a static), so
/// they are leaked once and handed out as `&'static str`.
fn build() -> Result<Catalog, String> {
    let pack = parse_pack()?;
    let mut infos: [Vec<RuleInfo>; 3] = Default::default();
    let mut messages: [HashMap<String, String>; 3] = Default::default();
    for lang in Lang::ALL {
        let file = parse_lang(lang)?;
        let english = if lang == Lang::En { None } else { Some(parse_lang(Lang::En)?) };
        let index = lang_index(lang);
        for (name, template) in &file.messages {
            messages[index].insert(format!("common.{name}"), template.clone());
        }
        for meta in &pack.rule {
            // A language that lacks a rule falls back to English (the tests forbid it anyway).
            let texts = file
                .rules
                .get(&meta.id)
                .or_else(|| english.as_ref().and_then(|en| en.rules.get(&meta.id)))
                .ok_or_else(|| format!("{lang}.toml has no texts for rule {}", meta.id))?;
            for (name, template) in &texts.messages {
                messages[index].insert(format!("{}.{name}", meta.id), template.clone());
            }
            let mut params = Vec::with_capacity(meta.params.len());
            for param in &meta.params {
                params.push(ParamSpec {
                    name: leak(param.name.clone()),
                    kind: param.kind.clone(),
                    default: json_of(&param.default)?,
                    description: leak(texts.params.get(&param.name).cloned().unwrap_or_default()),
                });
            }
            let steps: Vec<&'static str> = texts.remediation.iter().cloned().map(leak).collect();
            infos[index].push(RuleInfo {
                id: leak(meta.id.clone()),
                lang,
                title: leak(texts.title.clone()),
                problem: leak(texts.problem.clone()),
                severity: meta.severity,
                reads: leak_slice(meta.reads.clone()),
                description: leak(texts.description.trim().to_owned()),
                remediation: leak(steps.join("\n")),
                remediation_steps: leak_slice(steps),
                references: leak_slice(meta.references.iter().cloned().map(leak).collect()),
                params: leak_slice(params),
                flap: meta.flap,
                explained_by: leak_slice(meta.explained_by.iter().cloned().map(leak).collect()),
                catalogue_ids: leak_slice(meta.catalogue.iter().cloned().map(leak).collect()),
                seed_points: leak_slice(meta.seed_points.clone()),
            });
        }
    }
    Ok(Catalog { infos, messages })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::message::placeholders;

    #[test]
    fn every_file_parses_and_the_catalogue_builds() {
        parse_pack().expect("pack.toml parses");
        for lang in Lang::ALL {
            parse_lang(lang).expect("language file parses");
        }
        assert!(build().is_ok());
    }

    #[test]
    fn every_language_has_exactly_the_english_texts() {
        let pack = parse_pack().expect("pack");
        let en = parse_lang(Lang::En).expect("en");
        let ids: BTreeSet<&str> = pack.rule.iter().map(|r| r.id.as_str()).collect();
        for lang in Lang::ALL {
            let file = parse_lang(lang).expect("lang");
            let texts: BTreeSet<&str> = file.rules.keys().map(String::as_str).collect();
            assert_eq!(texts, ids, "{lang}.toml: rules with texts differ from pack.toml");
            let common: BTreeSet<_> = file.messages.keys().collect();
            assert_eq!(common, en.messages.keys().collect(), "{lang}.toml: [messages] keys");
            for (name, template) in &file.messages {
                let mut want = placeholders(&en.messages[name]);
                let mut got = placeholders(template);
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want, "{lang}.toml: placeholders of common.{name}");
            }
            for meta in &pack.rule {
                let ours = &file.rules[&meta.id];
                let english = &en.rules[&meta.id];
                let where_ = format!("{lang}.toml [rules.{}]", meta.id);
                assert!(!ours.title.trim().is_empty(), "{where_}: title");
                assert!(!ours.problem.trim().is_empty(), "{where_}: problem");
                assert_ne!(
                    ours.problem, ours.title,
                    "{where_}: the problem names the failure, not the check"
                );
                assert!(!ours.description.trim().is_empty(), "{where_}: description");
                assert!(!ours.remediation.is_empty(), "{where_}: remediation");
                assert!(ours.remediation.iter().all(|s| !s.trim().is_empty()), "{where_}: empty step");
                assert_eq!(ours.remediation.len(), english.remediation.len(), "{where_}: remediation steps");
                let declared: BTreeSet<&str> = meta.params.iter().map(|p| p.name.as_str()).collect();
                let described: BTreeSet<&str> = ours.params.keys().map(String::as_str).collect();
                assert_eq!(described, declared, "{where_}: parameter descriptions");
                assert!(ours.params.values().all(|d| !d.trim().is_empty()), "{where_}: empty param text");
                let keys: BTreeSet<_> = ours.messages.keys().collect();
                assert_eq!(keys, english.messages.keys().collect(), "{where_}: message keys");
                for (name, template) in &ours.messages {
                    let mut want = placeholders(&english.messages[name]);
                    let mut got = placeholders(template);
                    want.sort_unstable();
                    got.sort_unstable();
                    assert_eq!(got, want, "{where_}: placeholders of message {name}");
                }
            }
        }
    }

    #[test]
    fn translations_are_not_english_copies() {
        let en = parse_lang(Lang::En).expect("en");
        for lang in [Lang::Pl, Lang::Uk] {
            let file = parse_lang(lang).expect("lang");
            for (id, texts) in &file.rules {
                assert_ne!(texts.title, en.rules[id].title, "{lang}: title of {id} is untranslated");
                assert_ne!(texts.problem, en.rules[id].problem, "{lang}: problem of {id} is untranslated");
                assert_ne!(texts.description, en.rules[id].description, "{lang}: description of {id}");
            }
        }
    }

    #[test]
    fn parameters_are_well_formed() {
        let pack = parse_pack().expect("pack");
        for meta in &pack.rule {
            let mut names = BTreeSet::new();
            for param in &meta.params {
                assert!(names.insert(&param.name), "{}: parameter {} twice", meta.id, param.name);
                assert!(
                    param.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{}: parameter {} is not snake_case",
                    meta.id,
                    param.name
                );
                let default = json_of(&param.default).expect("default converts");
                assert_eq!(param.kind.check(&default), Ok(()), "{}: default of {}", meta.id, param.name);
            }
            assert!(meta.flap.open_after >= 1 && meta.flap.resolve_after >= 1, "{}: flap", meta.id);
            assert!(meta.seed_points.iter().all(|p| (1..=9).contains(p)), "{}: seed points", meta.id);
            for reference in &meta.references {
                assert!(reference.starts_with("https://"), "{}: {reference}", meta.id);
            }
            assert!(!meta.references.is_empty(), "{}: references", meta.id);
        }
    }

    #[test]
    fn explained_by_names_other_rules_of_the_pack() {
        let rule = |id: &str, explained_by: &str| {
            format!(
                "[[rule]]\nid = \"{id}\"\nseverity = \"high\"\nreferences = [\"https://x\"]\n\
                 flap = {{ open_after = 1, resolve_after = 1 }}\nexplained_by = [{explained_by}]\n"
            )
        };
        let ok = rule("a", "") + &rule("b", "\"a\"");
        assert!(parse_pack_text(&ok).is_ok());
        let unknown = rule("a", "") + &rule("b", "\"sspr-enabeld\"");
        let error = parse_pack_text(&unknown).err().unwrap_or_default();
        assert!(error.contains("rule b is explained_by unknown rule sspr-enabeld"), "{error}");
        let itself = rule("a", "\"a\"");
        assert!(parse_pack_text(&itself).err().unwrap_or_default().contains("lists itself"));
        let cycle = rule("a", "\"b\"") + &rule("b", "\"c\"") + &rule("c", "\"a\"");
        assert!(parse_pack_text(&cycle).err().unwrap_or_default().contains("cycle"));
        let twice = rule("a", "") + &rule("a", "");
        assert!(parse_pack_text(&twice).err().unwrap_or_default().contains("declared twice"));
        // The shipped pack: every rule it names exists, and the accessor exposes them.
        let shipped = parse_pack().expect("the shipped pack is valid");
        assert!(shipped.rule.iter().any(|r| !r.explained_by.is_empty()));
        let info = crate::rule_info("test-user-sspr-capable", Lang::Pl).expect("rule");
        assert_eq!(info.explained_by, ["sspr-enabled"]);
    }

    #[test]
    fn every_seed_point_is_covered_by_a_rule() {
        let pack = parse_pack().expect("pack");
        for point in 1..=9u8 {
            assert!(
                pack.rule.iter().any(|r| r.seed_points.contains(&point)),
                "seed checklist point {point} has no rule"
            );
        }
    }
}
