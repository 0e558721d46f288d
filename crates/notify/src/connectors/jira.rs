//! Jira Cloud (REST API v3): one issue per problem.
//!
//! - **Create**: `POST /rest/api/3/issue` in the configured project, with the issue type, the
//!   ticket title as summary, the ticket body as an Atlassian Document Format description, and
//!   the labels `writeback-doctor` and the problem key. Labels are searchable and need no custom
//!   field, so the key lives there.
//! - **Find**: `POST /rest/api/3/search/jql` (the enhanced search that replaced the removed
//!   `/rest/api/3/search`) with `labels = "<key>" ORDER BY created DESC`. That search is not
//!   read-after-write consistent (a new issue can take minutes to show): the engine does not take
//!   "not found" for proof while a create is younger than [`Connector::search_lag`].
//! - **Note**: `POST /rest/api/3/issue/{key}/comment` (ADF body).
//! - **Close**: the transition named `close_transition`, then the closing comment. If that
//!   transition is not offered because the issue is already done (a person closed it, or an
//!   earlier attempt did), only the comment is added.
//! - **Reopen**: the transition named `reopen_transition` plus a comment (`Outcome::Done`); an
//!   issue that is no longer done (reopened by a person) only gets the comment. If the
//!   workflow offers no such transition from the done status, a new issue replaces it
//!   (`Outcome::Ticket`): one `POST /rest/api/3/issue` that also adds the `link_type` issue link
//!   (`update.issuelinks`, the old issue as `outwardIssue`, so the new one is the link's inward
//!   issue), so there is never a replacement without its link. Before creating, an earlier
//!   attempt's replacement (whose answer was lost) is looked for with reads by key, which are
//!   current, never with the lagging search: `GET /rest/api/3/issue/{old}?fields=issuelinks`,
//!   then, for the issues linked to it with `link_type` as the inward issue (newest first, at
//!   most `REPLACEMENT_READS`), `GET /rest/api/3/issue/{linked}?fields=labels`; the first that
//!   carries `writeback-doctor` and the problem key is the replacement, returned instead of
//!   creating another. A retry at once after a lost create answer thus finds it.
//!
//! A `404` for the stored issue (deleted, or moved out of the account's reach) is
//! [`DeliveryError::TicketGone`]: Jira answers "Issue does not exist or you do not have
//! permission to see it".
//!
//! Transitions are matched by their name or by the name of the status they lead to, ignoring
//! case, because team-managed projects name transitions after statuses and company-managed
//! workflows often do not ("Reopen Issue" → "Reopened").
//!
//! Settings:
//! - `url`: the site, `https://<site>.atlassian.net`.
//! - `config.email`: the Atlassian account the API token belongs to (Basic auth user).
//! - `credentials.api_token`: an API token of that account (id.atlassian.com → Security).
//! - `config.project_key` (required): the project issues go to, e.g. `OPS`.
//! - `config.issue_type` (default `Task`): the issue type's name in that project.
//! - `config.close_transition` (default `Done`), `config.reopen_transition` (default `To Do`):
//!   the workflow's names, which differ between projects.
//! - `config.link_type` (default `Relates`): the issue link type between a reopened problem's new
//!   issue and the old one. The link is set in the create, so the project's create screen must
//!   offer the Linked Issues field (Jira refuses the create with a `400` naming `issuelinks`
//!   otherwise).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use url::Url;

use super::{Fields, check_base_url, endpoint, gone_on_404};
use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
    TicketRef,
};
use crate::event::Event;

/// The label every issue we create carries, next to its problem key.
const PRODUCT_LABEL: &str = "writeback-doctor";

/// How long a new issue may take to show in `/rest/api/3/search/jql`, which is not
/// read-after-write consistent: Atlassian's "Search after write with search and reconcile" says
/// the delay "might vary from a few seconds to minutes". Its `reconcileIssues` cure needs the
/// issue ids, which a lost create answer never gave us. Three minutes of waiting only delays
/// recreating an issue whose create truly failed.
const SEARCH_LAG: Duration = Duration::from_secs(180);

/// How many issues linked to a done issue a reopen reads, newest first, looking for an earlier
/// attempt's replacement: ours is the newest such link unless people linked more in the seconds
/// between a lost answer and its retry.
const REPLACEMENT_READS: usize = 5;

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut config = Fields::new("config", &settings.config, &mut errors);
    let email = config.required_str("email");
    let project_key = config.required_str("project_key");
    let issue_type = config.str_or("issue_type", "Task");
    let close_transition = config.str_or("close_transition", "Done");
    let reopen_transition = config.str_or("reopen_transition", "To Do");
    let link_type = config.str_or("link_type", "Relates");
    let mut credentials = Fields::new("credentials", &settings.credentials, &mut errors);
    let api_token = credentials.required_str("api_token");
    check_base_url(&settings.url, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(Jira {
        base: settings.url.clone(),
        email,
        api_token,
        project_key,
        issue_type,
        close_transition,
        reopen_transition,
        link_type,
    }))
}

struct Jira {
    base: Url,
    email: String,
    api_token: String,
    project_key: String,
    issue_type: String,
    close_transition: String,
    reopen_transition: String,
    link_type: String,
}

impl std::fmt::Debug for Jira {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jira")
            .field("base", &self.base.as_str())
            .field("email", &self.email)
            .field("project_key", &self.project_key)
            .field("issue_type", &self.issue_type)
            .finish_non_exhaustive()
    }
}

/// One workflow transition offered for an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: String,
    pub name: String,
    /// The status it leads to.
    pub to: String,
}

/// Jira's answer listing the transitions offered for an issue.
pub fn read_transitions(answer: &Value) -> Result<Vec<Transition>, DeliveryError> {
    let Some(list) = answer.get("transitions").and_then(Value::as_array) else {
        return Err(DeliveryError::Protocol("Jira's transitions answer has no transition list".into()));
    };
    Ok(list
        .iter()
        .filter_map(|t| {
            Some(Transition {
                id: t.get("id")?.as_str()?.to_owned(),
                name: t.get("name").and_then(Value::as_str).unwrap_or("").to_owned(),
                to: t.pointer("/to/name").and_then(Value::as_str).unwrap_or("").to_owned(),
            })
        })
        .collect())
}

impl Jira {
    fn api_url(&self, segments: &[&str]) -> Url {
        let mut all = vec!["rest", "api", "3"];
        all.extend_from_slice(segments);
        endpoint(&self.base, &all)
    }

    fn request(&self, http: &Http, method: reqwest::Method, segments: &[&str]) -> reqwest::RequestBuilder {
        self.request_to(http, method, self.api_url(segments))
    }

    fn request_to(&self, http: &Http, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        http.client()
            .request(method, url)
            .basic_auth(&self.email, Some(&self.api_token))
            .header(reqwest::header::ACCEPT, "application/json")
    }

    fn ticket(&self, issue_key: &str) -> TicketRef {
        TicketRef {
            external_id: issue_key.to_owned(),
            url: Some(endpoint(&self.base, &["browse", issue_key]).to_string()),
        }
    }

    /// Creates the problem's issue; with `replacing`, linked to that issue in the same request
    /// (the new issue inward, `replacing` outward, as `POST /issueLink` would with
    /// `inwardIssue` = new, `outwardIssue` = old).
    async fn create(
        &self,
        http: &Http,
        event: &Event,
        key: &str,
        replacing: Option<&str>,
    ) -> Result<TicketRef, DeliveryError> {
        let finding_url = event.data.finding.as_ref().and_then(|f| f.url.as_deref());
        let mut body = json!({
            "fields": {
                "project": {"key": self.project_key},
                "issuetype": {"name": self.issue_type},
                "summary": crate::event::truncate(&event.ticket_title(), 255),
                "description": adf_document(&event.ticket_body(), finding_url),
                "labels": [PRODUCT_LABEL, key],
            }
        });
        if let Some(old) = replacing {
            body["update"] = json!({
                "issuelinks": [{
                    "add": {"type": {"name": self.link_type}, "outwardIssue": {"key": old}},
                }],
            });
        }
        let answer =
            http.send(self.request(http, reqwest::Method::POST, &["issue"]).json(&body)).await?.json()?;
        match answer.get("key").and_then(Value::as_str) {
            Some(issue_key) if !issue_key.is_empty() => Ok(self.ticket(issue_key)),
            _ => Err(DeliveryError::Protocol("Jira created an issue but its answer has no issue key".into())),
        }
    }

    /// The newest issue labelled `key`.
    async fn find(&self, http: &Http, key: &str) -> Result<Option<TicketRef>, DeliveryError> {
        let body = json!({
            "jql": format!("labels = \"{}\" ORDER BY created DESC", key.replace('\\', "\\\\").replace('"', "\\\"")),
            "maxResults": 1,
            "fields": ["status"],
        });
        let answer = http
            .send(self.request(http, reqwest::Method::POST, &["search", "jql"]).json(&body))
            .await?
            .json()?;
        let Some(issues) = answer.get("issues").and_then(Value::as_array) else {
            return Err(DeliveryError::Protocol("Jira's search answer has no issue list".into()));
        };
        Ok(issues.first().and_then(|i| i.get("key")).and_then(Value::as_str).map(|k| self.ticket(k)))
    }

    /// An earlier attempt's replacement for the done issue `issue_key`: an issue linked to it
    /// with `link_type` as the link's inward issue (as [`Jira::create`] links it) that carries our
    /// labels. Reads by key only, which Jira answers from current data (unlike search).
    async fn replacement(
        &self,
        http: &Http,
        issue_key: &str,
        key: &str,
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let mut url = self.api_url(&["issue", issue_key]);
        url.query_pairs_mut().append_pair("fields", "issuelinks");
        let answer =
            gone_on_404(http.send(self.request_to(http, reqwest::Method::GET, url)).await, issue_key)?
                .json()?;
        let Some(links) = answer.pointer("/fields/issuelinks").and_then(Value::as_array) else {
            return Err(DeliveryError::Protocol(format!(
                "Jira's answer for {issue_key} has no issue links (is issue linking enabled?)"
            )));
        };
        // On the old issue our replacement shows as the link's inward issue. The other way
        // round is the issue the old one replaced itself (labelled alike): never a candidate.
        let mut candidates: Vec<(u64, &str)> = links
            .iter()
            .filter(|l| {
                l.pointer("/type/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(&self.link_type))
            })
            .filter_map(|l| {
                let linked = l.get("inwardIssue")?;
                let linked_key = linked.get("key")?.as_str().filter(|k| !k.is_empty() && *k != issue_key)?;
                Some((issue_number(linked, linked_key), linked_key))
            })
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        candidates.dedup_by(|a, b| a.1 == b.1);
        for (_, linked_key) in candidates.into_iter().take(REPLACEMENT_READS) {
            let mut url = self.api_url(&["issue", linked_key]);
            url.query_pairs_mut().append_pair("fields", "labels");
            let linked = match http.send(self.request_to(http, reqwest::Method::GET, url)).await {
                Ok(response) => response.json()?,
                // Deleted since, or out of our reach: not ours to take.
                Err(DeliveryError::Status { status: 404, .. }) => continue,
                Err(e) => return Err(e),
            };
            let labels: Vec<&str> = linked
                .pointer("/fields/labels")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if labels.contains(&key) && labels.contains(&PRODUCT_LABEL) {
                return Ok(Some(self.ticket(linked_key)));
            }
        }
        Ok(None)
    }

    async fn comment(&self, http: &Http, issue_key: &str, text: &str) -> Result<(), DeliveryError> {
        let body = json!({"body": adf_document(text, None)});
        let request = self.request(http, reqwest::Method::POST, &["issue", issue_key, "comment"]).json(&body);
        gone_on_404(http.send(request).await, issue_key)?;
        Ok(())
    }

    async fn transitions(&self, http: &Http, issue_key: &str) -> Result<Vec<Transition>, DeliveryError> {
        let request = self.request(http, reqwest::Method::GET, &["issue", issue_key, "transitions"]);
        read_transitions(&gone_on_404(http.send(request).await, issue_key)?.json()?)
    }

    /// Takes the transition called `wanted` (or leading to a status called so), if offered.
    async fn transition(&self, http: &Http, issue_key: &str, wanted: &str) -> Result<bool, DeliveryError> {
        let offered = self.transitions(http, issue_key).await?;
        let chosen = offered
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(wanted))
            .or_else(|| offered.iter().find(|t| t.to.eq_ignore_ascii_case(wanted)));
        let Some(chosen) = chosen else {
            return Ok(false);
        };
        let body = json!({"transition": {"id": chosen.id}});
        let request =
            self.request(http, reqwest::Method::POST, &["issue", issue_key, "transitions"]).json(&body);
        gone_on_404(http.send(request).await, issue_key)?;
        Ok(true)
    }

    /// The issue's status category (`new`, `indeterminate` or `done`).
    async fn status_category(&self, http: &Http, issue_key: &str) -> Result<String, DeliveryError> {
        let mut url = self.api_url(&["issue", issue_key]);
        url.query_pairs_mut().append_pair("fields", "status");
        let answer =
            gone_on_404(http.send(self.request_to(http, reqwest::Method::GET, url)).await, issue_key)?
                .json()?;
        answer
            .pointer("/fields/status/statusCategory/key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DeliveryError::Protocol(format!("Jira's answer for {issue_key} has no status")))
    }

    async fn close(&self, http: &Http, event: &Event, ticket: &TicketRef) -> Result<Outcome, DeliveryError> {
        let issue_key = ticket.external_id.as_str();
        if !self.transition(http, issue_key, &self.close_transition).await?
            && self.status_category(http, issue_key).await? != "done"
        {
            return Err(DeliveryError::Protocol(format!(
                "{issue_key} offers no transition named \"{}\" (config.close_transition)",
                self.close_transition
            )));
        }
        self.comment(http, issue_key, &event.note_text()).await?;
        Ok(Outcome::Done)
    }

    async fn reopen(
        &self,
        http: &Http,
        event: &Event,
        ticket: &TicketRef,
        key: &str,
    ) -> Result<Outcome, DeliveryError> {
        let issue_key = ticket.external_id.as_str();
        // An issue a person (or an earlier attempt) already reopened only gets the note.
        if self.status_category(http, issue_key).await? != "done"
            || self.transition(http, issue_key, &self.reopen_transition).await?
        {
            self.comment(http, issue_key, &event.note_text()).await?;
            return Ok(Outcome::Done);
        }
        // The workflow cannot reopen a done issue: a new one, linked in its create. An earlier
        // attempt may have made it already (its answer lost); its link says so at once, where
        // the search may not show it for minutes.
        if let Some(earlier) = self.replacement(http, issue_key, key).await? {
            return Ok(Outcome::Ticket(earlier));
        }
        Ok(Outcome::Ticket(self.create(http, event, key, Some(issue_key)).await?))
    }
}

#[async_trait]
impl Connector for Jira {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Jira
    }

    fn destinations(&self) -> Vec<Url> {
        vec![self.base.clone()]
    }

    /// `Find` searches an index that lags behind creates (see `SEARCH_LAG`).
    fn search_lag(&self) -> Duration {
        SEARCH_LAG
    }

    #[tracing::instrument(skip_all, fields(action = action.name(), project = %self.project_key))]
    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError> {
        match action {
            Action::Create { event, key } => Ok(Outcome::Ticket(self.create(http, event, key, None).await?)),
            Action::Find { key, .. } => {
                Ok(self.find(http, key).await?.map_or(Outcome::NotFound, Outcome::Ticket))
            }
            Action::Note { event, ticket } => {
                self.comment(http, &ticket.external_id, &event.note_text()).await?;
                Ok(Outcome::Done)
            }
            Action::Close { event, ticket } => self.close(http, event, ticket).await,
            Action::Reopen { event, ticket, key } => self.reopen(http, event, ticket, key).await,
            Action::Send { event } => Err(DeliveryError::Protocol(format!(
                "Jira keeps tickets; the engine sent a message action for {}",
                event.event_type
            ))),
        }
    }
}

/// How new a linked issue is: its id (site-wide, increasing), else the number in its key.
fn issue_number(issue: &Value, issue_key: &str) -> u64 {
    issue
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .or_else(|| issue_key.rsplit_once('-').and_then(|(_, n)| n.parse().ok()))
        .unwrap_or(0)
}

/// Plain text as an Atlassian Document Format document: a paragraph per block of lines
/// (blank-line separated), lines joined by hard breaks; `link` becomes a last paragraph
/// that links to the finding.
fn adf_document(text: &str, link: Option<&str>) -> Value {
    let mut content = Vec::new();
    for block in text.split("\n\n") {
        let mut nodes = Vec::new();
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            if !nodes.is_empty() {
                nodes.push(json!({"type": "hardBreak"}));
            }
            nodes.push(json!({"type": "text", "text": line}));
        }
        if !nodes.is_empty() {
            content.push(json!({"type": "paragraph", "content": nodes}));
        }
    }
    if let Some(href) = link {
        content.push(json!({
            "type": "paragraph",
            "content": [{
                "type": "text",
                "text": "Open the finding in Writeback Doctor",
                "marks": [{"type": "link", "attrs": {"href": href}}],
            }],
        }));
    }
    json!({"type": "doc", "version": 1, "content": content})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adf_keeps_paragraphs_and_lines() {
        let doc = adf_document("one\ntwo\n\nthree\n", Some("https://wbd.example/f/1"));
        assert_eq!(doc["type"], "doc");
        let paragraphs = doc["content"].as_array().unwrap();
        assert_eq!(paragraphs.len(), 3);
        assert_eq!(paragraphs[0]["content"][1]["type"], "hardBreak");
        assert_eq!(paragraphs[2]["content"][0]["marks"][0]["attrs"]["href"], "https://wbd.example/f/1");
    }
}
