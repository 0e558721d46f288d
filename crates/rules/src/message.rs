//! Texts a rule says, as a key and typed arguments, rendered in any shipped language on demand.
//!
//! A rule never formats a sentence itself: it returns a [`Message`] (a key such as
//! `endpoint-reachable.dns` and the arguments the sentence needs). [`render`] looks the key up in
//! the pack's text files (`packs/writeback/{en,pl,uk}.toml`) and fills the `{placeholders}`.
//! The worker stores the message next to its English rendering (for logs and for clients that
//! ask for nothing else); the API renders it again in the language the request asks for.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog;

/// A language the pack ships texts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English: the language every text exists in first, and the fallback.
    En,
    /// Polish.
    Pl,
    /// Ukrainian.
    Uk,
}

impl Lang {
    /// Every shipped language, English first.
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Pl, Lang::Uk];

    /// The primary language subtag (`en`, `pl`, `uk`).
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Pl => "pl",
            Lang::Uk => "uk",
        }
    }

    /// Reads a language tag (`pl`, `pl-PL`, `uk_UA`, `EN-gb`); `None` for a language we do not
    /// ship. `ua` (a country code often used for Ukrainian by mistake) is accepted as Ukrainian.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        match primary.to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "pl" => Some(Lang::Pl),
            "uk" | "ua" => Some(Lang::Uk),
            _ => None,
        }
    }

    /// The best shipped language for an `Accept-Language` header (`pl-PL,pl;q=0.9,en;q=0.5`),
    /// by quality, then order; English when none is shipped or the header is malformed.
    /// A language listed with `q=0` is never chosen.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for entry in accept_language.split(',') {
            let mut parts = entry.split(';');
            let Some(lang) = parts.next().and_then(Lang::from_tag) else { continue };
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(|q| q.trim().parse::<f32>().unwrap_or(0.0)))
                .unwrap_or(1.0);
            if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule says about one subject: a text key and the arguments its sentence needs.
///
/// Keys are `<rule id>.<name>` for a rule's own sentences and `common.<name>` for those many rules
/// share (see [`keys`]). Arguments are plain JSON values; the same arguments fill the sentence in
/// every language.
///
/// ```
/// use wbd_rules::{Lang, Message, render};
///
/// let message = Message::new(wbd_rules::keys::NO_DATA).arg("probe", "connect_server");
/// assert!(render(&message, Lang::En).contains("connect_server"));
/// assert_ne!(render(&message, Lang::Pl), render(&message, Lang::En));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub key: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Value>,
}

impl Message {
    pub fn new(key: &'static str) -> Self {
        Message { key: Cow::Borrowed(key), args: BTreeMap::new() }
    }

    /// Adds an argument (builder style).
    pub fn arg(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.args.insert(name.to_owned(), value.into());
        self
    }

    /// This message as an argument of another: rendered in the outer message's language, so a
    /// sentence built from parts stays translatable.
    pub fn nested(self) -> Value {
        let args: serde_json::Map<String, Value> = self.args.into_iter().collect();
        serde_json::json!({ "key": self.key, "args": args })
    }

    pub(crate) fn from_nested(value: &Value) -> Option<Message> {
        let key = value.get("key")?.as_str()?;
        let args = match value.get("args") {
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => BTreeMap::new(),
        };
        Some(Message { key: Cow::Owned(key.to_owned()), args })
    }

    /// This message and every message nested in its arguments, outermost first.
    pub fn flatten(&self) -> Vec<Message> {
        let mut all = vec![self.clone()];
        let mut stack: Vec<&Value> = self.args.values().collect();
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(_) => {
                    if let Some(inner) = Message::from_nested(value) {
                        all.extend(inner.flatten());
                    }
                }
                Value::Array(items) => stack.extend(items.iter()),
                _ => {}
            }
        }
        all
    }

    /// The English rendering (what the worker stores as a finding's summary).
    pub fn english(&self) -> String {
        render(self, Lang::En)
    }
}

/// Keys of the sentences many rules share.
pub mod keys {
    /// `{probe}`: no active collector reported this probe kind.
    pub const NO_DATA: &str = "common.no-data";
    /// `{probe}`, `{error}`: the probe ran but could not gather the fact the rule needs.
    pub const PROBE_ERROR: &str = "common.probe-error";
    /// `{probe}`, `{field}`: the probe reported, but not the field the rule needs.
    pub const FIELD_MISSING: &str = "common.field-missing";
    /// `{typo}`, `{domain}`: the seed checklist misspells the relay domain.
    pub const RELAY_TYPO_HINT: &str = "common.relay-typo-hint";
}

/// Renders `message` in `lang`, falling back to English when the language lacks the key, and to
/// the key and its arguments when no language has it (never panics, never returns nothing).
pub fn render(message: &Message, lang: Lang) -> String {
    let template = catalog::message_template(lang, &message.key)
        .or_else(|| catalog::message_template(Lang::En, &message.key));
    match template {
        Some(template) => fill(template, &message.args, lang),
        None => {
            let mut text = message.key.to_string();
            for (name, value) in &message.args {
                let _ = write!(text, " {name}={}", display_value(value, lang));
            }
            text
        }
    }
}

/// Replaces every `{name}` in `template` with its argument; an unknown name stays as written, so
/// a mistake shows instead of silently vanishing (and the pack's tests catch it).
pub(crate) fn fill(template: &str, args: &BTreeMap<String, Value>, lang: Lang) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if is_placeholder_name(&after[..close]) => {
                let name = &after[..close];
                match args.get(name) {
                    Some(value) => out.push_str(&display_value(value, lang)),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The placeholder names a template uses, in order of first use.
#[cfg(test)]
pub(crate) fn placeholders(template: &str) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if is_placeholder_name(&after[..close]) => {
                let name = &after[..close];
                if !names.contains(&name) {
                    names.push(name);
                }
                rest = &after[close + 1..];
            }
            _ => rest = after,
        }
    }
    names
}

fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An argument as text: strings as they are, a nested message (an object with `key` and
/// `args`, see [`Message::nested`]) rendered in the same language, a list of nested messages
/// joined by spaces, other lists joined by commas.
fn display_value(value: &Value, lang: Lang) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        Value::Object(_) => match Message::from_nested(value) {
            Some(inner) => render(&inner, lang),
            None => value.to_string(),
        },
        Value::Array(items) => {
            let nested = items.iter().all(|item| item.is_object());
            let parts: Vec<String> = items.iter().map(|item| display_value(item, lang)).collect();
            parts.join(if nested { " " } else { ", " })
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fill_replaces_known_placeholders_and_keeps_the_rest() {
        let args: BTreeMap<String, Value> = [
            ("host".to_owned(), json!("h.example")),
            ("port".to_owned(), json!(443)),
            ("list".to_owned(), json!(["a", "b"])),
        ]
        .into();
        assert_eq!(
            fill("{host}:{port} [{list}] {missing} {not a name} {", &args, Lang::En),
            "h.example:443 [a, b] {missing} {not a name} {"
        );
        assert_eq!(placeholders("{a} {b} {a} {Not} {}"), ["a", "b"]);
    }

    #[test]
    fn languages_are_read_from_tags_and_headers() {
        assert_eq!(Lang::from_tag("pl-PL"), Some(Lang::Pl));
        assert_eq!(Lang::from_tag("uk_UA"), Some(Lang::Uk));
        assert_eq!(Lang::from_tag("ua"), Some(Lang::Uk));
        assert_eq!(Lang::from_tag("EN-gb"), Some(Lang::En));
        assert_eq!(Lang::from_tag("de"), None);
        assert_eq!(Lang::negotiate("de-DE,pl;q=0.8,en;q=0.5"), Lang::Pl);
        assert_eq!(Lang::negotiate("en;q=0.4, uk;q=0.9"), Lang::Uk);
        assert_eq!(Lang::negotiate("pl;q=0, de"), Lang::En);
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate(";;,;q=x"), Lang::En);
        assert_eq!(serde_json::to_value(Lang::Uk).ok(), Some(json!("uk")));
    }

    #[test]
    fn unknown_key_renders_as_key_and_arguments() {
        let message = Message::new("nope.nothing").arg("a", 1);
        assert_eq!(render(&message, Lang::Pl), "nope.nothing a=1");
    }

    #[test]
    fn nested_messages_render_in_the_outer_language() {
        let inner = Message::new(keys::NO_DATA).arg("probe", "graph");
        let outer =
            Message::new("nope.outer").arg("parts", json!([inner.clone().nested(), inner.clone().nested()]));
        let text = render(&outer, Lang::Pl);
        assert!(text.contains(&render(&inner, Lang::Pl)), "{text}");
        assert_eq!(outer.flatten().len(), 3);
    }

    #[test]
    fn message_round_trips_through_json() {
        let message = Message::new(keys::NO_DATA).arg("probe", "graph");
        let json = serde_json::to_value(&message).expect("serialises");
        assert_eq!(json, json!({"key": "common.no-data", "args": {"probe": "graph"}}));
        assert_eq!(serde_json::from_value::<Message>(json).ok(), Some(message));
    }
}
