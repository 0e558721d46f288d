//! Custom rules: conditions an organisation or a tenant writes in CEL (the `cel` crate, pinned),
//! evaluated over the published fact document ([`schema`]).
//!
//! A [`CustomRule`] has a `condition` (a CEL expression; `true` means "there is a problem") and an
//! optional `subject_expr` (a CEL expression giving the finding's subject as a string; default
//! `tenant`). [`compile`] checks a rule the way the API must before saving it:
//!
//! 1. limits: id, title and expression lengths ([`MAX_EXPRESSION_LEN`]), and how deeply an
//!    expression nests ([`MAX_NESTING`] brackets before it is parsed, [`MAX_DEPTH`] levels of its
//!    syntax tree after);
//! 2. it parses — a syntax error carries line, column and a caret under the source line;
//! 3. every variable, field and function it names exists: the roots are `now`, `collectors` and
//!    `facts`, fields are checked against the schema (also inside `exists`, `all`, `map`, `filter`
//!    and `has()`), functions against the CEL standard library plus [`FUNCTIONS`];
//! 4. it runs on the built-in sample tenant and gives a bool (and the subject a string).
//!
//! [`evaluate_custom`] converts a tenant's facts to CEL values once and runs every rule against
//! the same context. A run-time error (e.g. `No such key`, an index out of range) is an
//! [`Outcome::Unknown`] carrying the error text, never a silent `false`.
//!
//! ```
//! use wbd_rules::custom::{CustomRule, compile, evaluate_custom};
//! use wbd_rules::{Severity, TenantFacts};
//!
//! let rule = CustomRule {
//!     id: "old-connect".into(),
//!     title: "Connect older than 2.5.190".into(),
//!     severity: Severity::Medium,
//!     condition: "facts.connect_server.exists(c, !version_at_least(c.connect_version, '2.5.190.0'))".into(),
//!     subject_expr: None,
//! };
//! let compiled = compile(&rule).expect("valid");
//! let facts = TenantFacts { now: chrono::Utc::now(), collectors: vec![], facts: vec![] };
//! let evaluations = evaluate_custom(&[compiled], &facts);
//! assert!(evaluations[0].outcome.is_pass());
//!
//! let typo = CustomRule { condition: "facts.connect_server.exists(c, c.conect_version == '')".into(), ..rule };
//! let error = compile(&typo).unwrap_err();
//! assert!(error.to_string().contains("unknown field 'conect_version'"), "{error}");
//! ```

use std::borrow::Borrow;
pub mod schema;

use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};
use cel::{Context, Env, ExecutionError, Program};
use serde::{Deserialize, Serialize};
use serde_json::json;

use self::schema::{Node, SAMPLE, SCHEMA, fact_document, to_cel};
use crate::message::Message;
use crate::{DottedVersion, Outcome, Severity, TenantFacts, rules};

/// Longest accepted expression (condition or subject), in characters.
pub const MAX_EXPRESSION_LEN: usize = 4_000;
/// Most custom rules evaluated for one tenant (organisation's and tenant's together); the API
/// refuses to save more, and [`evaluate_custom`] reports any beyond it as unknown.
pub const MAX_RULES_PER_TENANT: usize = 50;
/// Deepest nesting of brackets — `(`, `[`, `{`, wherever they are, string literals included —
/// accepted in an expression. The CEL parser recurses for each level, deeply (a debug build
/// spends over 150 KiB of stack per level), so this is checked before parsing.
pub const MAX_NESTING: usize = 24;
/// Deepest syntax tree accepted (`a.b.c`, `x[0][0]`, `1 < 2 < 3` nest without brackets):
/// checking and running an expression recurse once per level.
pub const MAX_DEPTH: usize = 64;
/// Stack of the thread that parses, checks and runs custom rules: room for the deepest accepted
/// expression whatever thread the caller is on (a worker thread has 2 MiB). A debug build needs
/// 8 MiB for the deepest (`custom::tests::deep_nesting_…`), a release build far less.
const RULE_STACK_BYTES: usize = 32 * 1024 * 1024;
/// Longest id and title.
pub const MAX_ID_LEN: usize = 64;
pub const MAX_TITLE_LEN: usize = 200;

/// Functions we add to CEL's standard library.
///
/// - `version_at_least(version, minimum)`: dotted versions (`2.5.79.0`) compared part by part;
///   an unreadable version is a run-time error.
pub const FUNCTIONS: &[&str] = &["version_at_least"];

/// CEL's standard functions and the operators the parser produces.
const STANDARD_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "hasValue",
    "or",
    "orValue",
    "value",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::SUBSTRACT,
    operators::ADD,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER_EQUALS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::LESS,
    operators::NEGATE,
    operators::INDEX,
    operators::OPT_INDEX,
    operators::OPT_SELECT,
    operators::NOT_STRICTLY_FALSE,
    operators::IN,
];

/// Type names an expression may use as values (`type(x) == string`).
const TYPE_IDENTS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "timestamp",
    "duration",
];

/// A rule an organisation or a tenant wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Kebab-case, unique within the tenant, not a shipped rule's id.
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// CEL; `true` means there is a problem.
    pub condition: String,
    /// CEL giving the finding's subject (a string); `tenant` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_expr: Option<String>,
}

/// A custom rule that passed every check of [`compile`]; cheap to share between threads.
#[derive(Debug)]
pub struct CompiledRule {
    rule: CustomRule,
    condition: Program,
    subject: Option<Program>,
}

impl CompiledRule {
    pub fn rule(&self) -> &CustomRule {
        &self.rule
    }
}

/// Which expression of a rule an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleField {
    Id,
    Title,
    Condition,
    SubjectExpr,
}

impl RuleField {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleField::Id => "id",
            RuleField::Title => "title",
            RuleField::Condition => "condition",
            RuleField::SubjectExpr => "subject_expr",
        }
    }
}

/// Where in an expression a problem is: 1-based line and column, and the source line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: u32,
    pub column: u32,
    /// The source line, for the caret display.
    pub source_line: String,
}

/// Why a custom rule was refused. `Display` gives a caret-style message:
///
/// ```text
/// condition:1:29: unknown field 'hostt' of facts.endpoint[] (known: collector_id, …)
///  | facts.endpoint.exists(e, e.hostt == 'x')
///  | ............................^
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleError {
    /// The id is empty, too long, not kebab-case, or a shipped rule's.
    InvalidId {
        reason: String,
    },
    /// The title is empty or too long.
    InvalidTitle {
        reason: String,
    },
    TooLong {
        field: RuleField,
        max: usize,
        len: usize,
    },
    /// Brackets nested deeper than [`MAX_NESTING`], or a syntax tree deeper than [`MAX_DEPTH`].
    TooDeep {
        field: RuleField,
        max: usize,
        position: Option<Position>,
    },
    Syntax {
        field: RuleField,
        message: String,
        position: Option<Position>,
    },
    UnknownVariable {
        field: RuleField,
        name: String,
        known: Vec<String>,
        position: Option<Position>,
    },
    UnknownField {
        field: RuleField,
        path: String,
        name: String,
        known: Vec<String>,
        position: Option<Position>,
    },
    /// A field selected on a list (`facts.endpoint.host` instead of `facts.endpoint.exists(e, e.host …)`).
    FieldOfList {
        field: RuleField,
        path: String,
        name: String,
        position: Option<Position>,
    },
    UnknownFunction {
        field: RuleField,
        name: String,
        position: Option<Position>,
    },
    /// Evaluating on the sample tenant failed.
    DryRun {
        field: RuleField,
        error: String,
    },
    /// The expression gave the wrong type on the sample tenant (a condition must give a bool, a
    /// subject a string).
    WrongType {
        field: RuleField,
        expected: &'static str,
        got: String,
    },
}

impl RuleError {
    /// The expression (or field) the error is about.
    pub fn field(&self) -> RuleField {
        match self {
            RuleError::InvalidId { .. } => RuleField::Id,
            RuleError::InvalidTitle { .. } => RuleField::Title,
            RuleError::TooLong { field, .. }
            | RuleError::TooDeep { field, .. }
            | RuleError::Syntax { field, .. }
            | RuleError::UnknownVariable { field, .. }
            | RuleError::UnknownField { field, .. }
            | RuleError::FieldOfList { field, .. }
            | RuleError::UnknownFunction { field, .. }
            | RuleError::DryRun { field, .. }
            | RuleError::WrongType { field, .. } => *field,
        }
    }

    pub fn position(&self) -> Option<&Position> {
        match self {
            RuleError::Syntax { position, .. }
            | RuleError::TooDeep { position, .. }
            | RuleError::UnknownVariable { position, .. }
            | RuleError::UnknownField { position, .. }
            | RuleError::FieldOfList { position, .. }
            | RuleError::UnknownFunction { position, .. } => position.as_ref(),
            _ => None,
        }
    }

    fn headline(&self) -> String {
        match self {
            RuleError::InvalidId { reason } => format!("invalid id: {reason}"),
            RuleError::InvalidTitle { reason } => format!("invalid title: {reason}"),
            RuleError::TooLong { max, len, .. } => {
                format!("expression is {len} characters long; at most {max}")
            }
            RuleError::TooDeep { max, .. } => {
                format!(
                    "expression is nested too deeply; at most {max} levels: split it, or use fewer brackets"
                )
            }
            RuleError::Syntax { message, .. } => format!("syntax error: {message}"),
            RuleError::UnknownVariable { name, known, .. } => {
                format!("unknown variable '{name}' (known: {})", known.join(", "))
            }
            RuleError::UnknownField { path, name, known, .. } => {
                format!("unknown field '{name}' of {path} (known: {})", known.join(", "))
            }
            RuleError::FieldOfList { path, name, .. } => format!(
                "{path} is a list: select '{name}' on its elements, e.g. {path}.exists(x, x.{name} ...)"
            ),
            RuleError::UnknownFunction { name, .. } => format!("unknown function '{name}'"),
            RuleError::DryRun { error, .. } => format!("fails on the sample tenant: {error}"),
            RuleError::WrongType { expected, got, .. } => {
                format!("gives a value of type {got} on the sample tenant; it must give a {expected}")
            }
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field().as_str();
        match self.position() {
            Some(p) => {
                write!(f, "{field}:{}:{}: {}", p.line, p.column, self.headline())?;
                let dots = ".".repeat(p.column.saturating_sub(1) as usize);
                write!(f, "\n | {}\n | {dots}^", p.source_line)
            }
            None => write!(f, "{field}: {}", self.headline()),
        }
    }
}

impl std::error::Error for RuleError {}

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Checks a custom rule: limits, syntax, names against the schema, and a dry run on the sample
/// tenant (see the module docs). The error points at the field and, where it can, the position.
pub fn compile(rule: &CustomRule) -> Result<CompiledRule, RuleError> {
    on_rule_stack(|| compile_here(rule))
}

fn compile_here(rule: &CustomRule) -> Result<CompiledRule, RuleError> {
    check_id(&rule.id)?;
    // Blank is empty; the length is counted as sent, as the API document's maxLength counts.
    if rule.title.trim().is_empty() || rule.title.chars().count() > MAX_TITLE_LEN {
        return Err(RuleError::InvalidTitle { reason: format!("must be 1 to {MAX_TITLE_LEN} characters") });
    }
    let condition = compile_expression(RuleField::Condition, &rule.condition)?;
    let subject = match &rule.subject_expr {
        Some(expr) => Some(compile_expression(RuleField::SubjectExpr, expr)?),
        None => None,
    };
    let compiled = CompiledRule { rule: rule.clone(), condition, subject };
    dry_run(&compiled)?;
    Ok(compiled)
}

/// Checks several rules as one tenant's set: each as [`compile`] does, then the count and
/// duplicate ids.
pub fn compile_all(rules: &[CustomRule]) -> Result<Vec<CompiledRule>, (usize, RuleError)> {
    if rules.len() > MAX_RULES_PER_TENANT {
        let reason = format!("at most {MAX_RULES_PER_TENANT} custom rules per tenant");
        return Err((MAX_RULES_PER_TENANT, RuleError::InvalidId { reason }));
    }
    let mut compiled = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        if rules[..index].iter().any(|earlier| earlier.id == rule.id) {
            return Err((index, RuleError::InvalidId { reason: format!("'{}' is used twice", rule.id) }));
        }
        compiled.push(compile(rule).map_err(|e| (index, e))?);
    }
    Ok(compiled)
}

fn check_id(id: &str) -> Result<(), RuleError> {
    let invalid = |reason: String| Err(RuleError::InvalidId { reason });
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return invalid(format!("must be 1 to {MAX_ID_LEN} characters"));
    }
    if !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || id.starts_with('-')
        || id.ends_with('-')
    {
        return invalid("use lower-case letters, digits and inner hyphens only".to_owned());
    }
    if rules().iter().any(|info| info.id == id) {
        return invalid(format!("'{id}' is the id of a shipped rule"));
    }
    Ok(())
}

fn compile_expression(field: RuleField, source: &str) -> Result<Program, RuleError> {
    let len = source.chars().count();
    if len > MAX_EXPRESSION_LEN {
        return Err(RuleError::TooLong { field, max: MAX_EXPRESSION_LEN, len });
    }
    check_nesting(field, source)?;
    let program = ENV.compile(source).map_err(|errors| {
        let first = errors.errors.first();
        let position = first.and_then(|e| {
            let line = u32::try_from(e.pos.0).ok().filter(|l| *l >= 1)?;
            let column = u32::try_from(e.pos.1).ok()?;
            Some(Position { line, column: column.max(1), source_line: source_line(source, line) })
        });
        let message = first.map_or_else(|| errors.to_string(), |e| e.msg.clone());
        RuleError::Syntax { field, message, position }
    })?;
    let checker = Checker { field, source, program: &program };
    if let Some(id) = deeper_than(program.expression(), MAX_DEPTH) {
        return Err(RuleError::TooDeep { field, max: MAX_DEPTH, position: checker.position(id) });
    }
    checker.check(program.expression(), &mut Vec::new())?;
    Ok(program)
}

/// Runs `work` on a thread with [`RULE_STACK_BYTES`] of stack, and waits for it.
fn on_rule_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("custom-rules".to_owned())
            .stack_size(RULE_STACK_BYTES)
            .spawn_scoped(scope, work)
            .expect("a thread for custom rules");
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Refuses brackets nested deeper than [`MAX_NESTING`], before the parser recurses into them.
/// Brackets inside string literals count too: telling them apart would take a second parser.
fn check_nesting(field: RuleField, source: &str) -> Result<(), RuleError> {
    let mut depth = 0usize;
    let (mut line, mut column) = (1u32, 0u32);
    for c in source.chars() {
        if c == '\n' {
            (line, column) = (line + 1, 0);
            continue;
        }
        column += 1;
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => continue,
        }
        if depth > MAX_NESTING {
            let position = Position { line, column, source_line: source_line(source, line) };
            return Err(RuleError::TooDeep { field, max: MAX_NESTING, position: Some(position) });
        }
    }
    Ok(())
}

/// The id of the first node found below `max` levels of `root`, if any; without recursing.
fn deeper_than(root: &IdedExpr, max: usize) -> Option<u64> {
    let mut pending = vec![(root, 1usize)];
    while let Some((expr, depth)) = pending.pop() {
        if depth > max {
            return Some(expr.id);
        }
        let below = depth + 1;
        match &expr.expr {
            Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
            Expr::Call(call) => {
                pending.extend(call.target.iter().map(|t| (&**t, below)));
                pending.extend(call.args.iter().map(|a| (a, below)));
            }
            Expr::Comprehension(c) => pending.extend(
                [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result].map(|e| (e, below)),
            ),
            Expr::List(list) => pending.extend(list.elements.iter().map(|e| (e, below))),
            Expr::Select(select) => pending.push((&select.operand, below)),
            Expr::Map(map) => pending
                .extend(map.entries.iter().flat_map(|entry| entry_children(&entry.expr)).map(|e| (e, below))),
            Expr::Struct(st) => pending
                .extend(st.entries.iter().flat_map(|entry| entry_children(&entry.expr)).map(|e| (e, below))),
        }
    }
    None
}

fn entry_children(entry: &EntryExpr) -> Vec<&IdedExpr> {
    match entry {
        EntryExpr::StructField(field) => vec![&field.value],
        EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
    }
}

fn source_line(source: &str, line: u32) -> String {
    source.lines().nth(line.saturating_sub(1) as usize).unwrap_or_default().to_owned()
}

/// Walks the expression with the schema: every name must exist.
struct Checker<'a> {
    field: RuleField,
    source: &'a str,
    program: &'a Program,
}

impl Checker<'_> {
    fn position(&self, id: u64) -> Option<Position> {
        let (start, _) = self.program.source_info().offset_for(id)?;
        let mut line = 1u32;
        let mut column = 1u32;
        for (index, c) in self.source.chars().enumerate() {
            if index as u64 >= u64::from(start) {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Some(Position { line, column, source_line: source_line(self.source, line) })
    }

    /// The shape of `expr`'s value, or the first unknown name in it.
    fn check(&self, expr: &IdedExpr, scopes: &mut Vec<(String, Node)>) -> Result<Node, RuleError> {
        match &expr.expr {
            Expr::Unspecified | Expr::Literal(_) => Ok(Node::Scalar),
            Expr::Ident(name) => {
                if let Some((_, node)) = scopes.iter().rev().find(|(bound, _)| bound == name) {
                    return Ok(node.clone());
                }
                if let Some(node) = SCHEMA.get(name) {
                    return Ok(node.clone());
                }
                if name.starts_with('@') || TYPE_IDENTS.contains(&name.as_str()) {
                    return Ok(Node::Any);
                }
                Err(RuleError::UnknownVariable {
                    field: self.field,
                    name: name.clone(),
                    known: SCHEMA.keys().cloned().collect(),
                    position: self.position(expr.id),
                })
            }
            Expr::Select(select) => {
                let base = self.check(&select.operand, scopes)?;
                self.select(expr.id, &select.operand, base, &select.field)
            }
            Expr::Call(call) => {
                if !STANDARD_FUNCTIONS.contains(&call.func_name.as_str())
                    && !FUNCTIONS.contains(&call.func_name.as_str())
                {
                    return Err(RuleError::UnknownFunction {
                        field: self.field,
                        name: call.func_name.clone(),
                        position: self.position(expr.id),
                    });
                }
                if let Some(target) = &call.target {
                    self.check(target, scopes)?;
                }
                let mut args = Vec::with_capacity(call.args.len());
                for arg in &call.args {
                    args.push(self.check(arg, scopes)?);
                }
                if call.func_name == operators::INDEX && call.args.len() == 2 {
                    return Ok(match &args[0] {
                        Node::List(element) => (**element).clone(),
                        Node::Object(_) => match &call.args[1].expr {
                            Expr::Literal(cel::common::ast::LiteralValue::String(key)) => {
                                self.select(expr.id, &call.args[0], args[0].clone(), key.as_ref())?
                            }
                            _ => Node::Any,
                        },
                        _ => Node::Any,
                    });
                }
                Ok(Node::Any)
            }
            Expr::Comprehension(comprehension) => {
                let range = self.check(&comprehension.iter_range, scopes)?;
                let element = match &range {
                    Node::List(element) => (**element).clone(),
                    Node::Object(_) => Node::Scalar,
                    _ => Node::Any,
                };
                let accu_init = self.check(&comprehension.accu_init, scopes)?;
                let depth = scopes.len();
                match &comprehension.iter_var2 {
                    Some(second) => {
                        scopes.push((comprehension.iter_var.clone(), Node::Scalar));
                        scopes.push((second.clone(), element));
                    }
                    None => scopes.push((comprehension.iter_var.clone(), element)),
                }
                scopes.push((comprehension.accu_var.clone(), accu_init.merge_loose()));
                let result = self
                    .check(&comprehension.loop_cond, scopes)
                    .and_then(|_| self.check(&comprehension.loop_step, scopes))
                    .and_then(|_| self.check(&comprehension.result, scopes));
                scopes.truncate(depth);
                result.map(|_| Node::Any)
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.check(element, scopes)?;
                }
                Ok(Node::List(Box::new(Node::Any)))
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.entry(&entry.expr, scopes)?;
                }
                Ok(Node::Any)
            }
            Expr::Struct(structure) => {
                for entry in &structure.entries {
                    self.entry(&entry.expr, scopes)?;
                }
                Ok(Node::Any)
            }
        }
    }

    fn entry(&self, entry: &EntryExpr, scopes: &mut Vec<(String, Node)>) -> Result<(), RuleError> {
        match entry {
            EntryExpr::StructField(field) => self.check(&field.value, scopes).map(|_| ()),
            EntryExpr::MapEntry(entry) => {
                self.check(&entry.key, scopes)?;
                self.check(&entry.value, scopes).map(|_| ())
            }
        }
    }

    fn select(&self, id: u64, operand: &IdedExpr, base: Node, name: &str) -> Result<Node, RuleError> {
        match base {
            Node::Object(fields) => match fields.get(name) {
                Some(node) => Ok(node.clone()),
                None => Err(RuleError::UnknownField {
                    field: self.field,
                    path: path_of(operand),
                    name: name.to_owned(),
                    known: fields.keys().cloned().collect(),
                    position: self.position(id),
                }),
            },
            Node::List(_) => Err(RuleError::FieldOfList {
                field: self.field,
                path: path_of(operand),
                name: name.to_owned(),
                position: self.position(id),
            }),
            Node::Any | Node::Scalar => Ok(Node::Any),
        }
    }
}

impl Node {
    /// An accumulator starts as its initial value but changes shape as the loop runs.
    fn merge_loose(self) -> Node {
        Node::Any
    }
}

/// The source-like path of an expression (`facts.endpoint[]`, `e`), for messages.
fn path_of(expr: &IdedExpr) -> String {
    match &expr.expr {
        Expr::Ident(name) => name.clone(),
        Expr::Select(select) => format!("{}.{}", path_of(&select.operand), select.field),
        Expr::Call(call) if call.func_name == operators::INDEX && !call.args.is_empty() => {
            format!("{}[]", path_of(&call.args[0]))
        }
        _ => "the value".to_owned(),
    }
}

/// A context holding the tenant's document and our functions.
fn context_for(facts: &TenantFacts) -> Context<'static, 'static> {
    let document = fact_document(facts);
    let mut context = Context::with_env(Arc::clone(&ENV));
    for root in ["now", "collectors", "facts"] {
        let value = document.get(root).map_or(cel::Value::Null, |v| to_cel(v, Some(root)));
        context.add_variable_from_value(root, value);
    }
    // The name is ours, not a standard overload, so this cannot conflict.
    let _ = context.add_function("version_at_least", version_at_least);
    context
}

fn version_at_least(version: Arc<String>, minimum: Arc<String>) -> Result<cel::Value, ExecutionError> {
    match (DottedVersion::parse(&version), DottedVersion::parse(&minimum)) {
        (Some(v), Some(m)) => Ok(cel::Value::Bool(v >= m)),
        (None, _) => {
            Err(ExecutionError::function_error("version_at_least", format!("'{version}' is not a version")))
        }
        (_, None) => {
            Err(ExecutionError::function_error("version_at_least", format!("'{minimum}' is not a version")))
        }
    }
}

fn dry_run(rule: &CompiledRule) -> Result<(), RuleError> {
    let Ok(sample) = SAMPLE.as_ref() else { return Ok(()) };
    let context = context_for(sample);
    match rule.condition.execute(&context) {
        Ok(cel::Value::Bool(_)) => {}
        Ok(other) => {
            return Err(RuleError::WrongType {
                field: RuleField::Condition,
                expected: "bool",
                got: type_name(&other),
            });
        }
        Err(error) => {
            return Err(RuleError::DryRun { field: RuleField::Condition, error: error.to_string() });
        }
    }
    if let Some(subject) = &rule.subject {
        match subject.execute(&context) {
            Ok(cel::Value::String(_)) => {}
            Ok(other) => {
                return Err(RuleError::WrongType {
                    field: RuleField::SubjectExpr,
                    expected: "string",
                    got: type_name(&other),
                });
            }
            Err(error) => {
                return Err(RuleError::DryRun { field: RuleField::SubjectExpr, error: error.to_string() });
            }
        }
    }
    Ok(())
}

/// The CEL type name of a value (language-neutral, used in messages).
fn type_name(value: &cel::Value) -> String {
    match value {
        cel::Value::List(_) => "list",
        cel::Value::Map(_) => "map",
        cel::Value::Function(..) => "function",
        cel::Value::Int(_) => "int",
        cel::Value::UInt(_) => "uint",
        cel::Value::Float(_) => "double",
        cel::Value::String(_) => "string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Bool(_) => "bool",
        cel::Value::Duration(_) => "duration",
        cel::Value::Timestamp(_) => "timestamp",
        cel::Value::Null => "null",
        _ => "dyn",
    }
    .to_owned()
}

impl From<CustomEvaluation> for crate::Evaluation {
    fn from(e: CustomEvaluation) -> Self {
        crate::Evaluation {
            rule_id: e.rule_id.into(),
            subject: e.subject,
            title: e.title.into(),
            outcome: e.outcome,
        }
    }
}

/// One custom rule's outcome for the tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomEvaluation {
    pub rule_id: String,
    /// `tenant`, or what the rule's `subject_expr` gave.
    pub subject: String,
    pub title: String,
    pub outcome: Outcome,
}

/// Runs the tenant's custom rules (the organisation's and the tenant's, already compiled) over
/// its facts. The facts are converted to CEL once; each rule runs against the same context.
///
/// Condition `true` fails with the rule's severity; `false` passes; a run-time error or a
/// non-bool result is unknown, with the error text. Rules beyond [`MAX_RULES_PER_TENANT`] are
/// unknown too.
pub fn evaluate_custom<R: Borrow<CompiledRule> + Sync>(
    rules: &[R],
    facts: &TenantFacts,
) -> Vec<CustomEvaluation> {
    if rules.is_empty() {
        return Vec::new();
    }
    // Running recurses once per level of a rule's syntax tree: see `RULE_STACK_BYTES`.
    on_rule_stack(|| evaluate_here(rules, facts))
}

fn evaluate_here<R: Borrow<CompiledRule>>(rules: &[R], facts: &TenantFacts) -> Vec<CustomEvaluation> {
    let context = context_for(facts);
    rules
        .iter()
        .enumerate()
        .map(|(index, compiled)| {
            let compiled: &CompiledRule = compiled.borrow();
            let rule = &compiled.rule;
            let evaluation = |subject: String, outcome| CustomEvaluation {
                rule_id: rule.id.clone(),
                subject,
                title: rule.title.clone(),
                outcome,
            };
            if index >= MAX_RULES_PER_TENANT {
                let message = Message::new("common.custom-over-limit")
                    .arg("title", rule.title.as_str())
                    .arg("max", MAX_RULES_PER_TENANT);
                return evaluation(crate::rules::TENANT_SUBJECT.to_owned(), Outcome::unknown(message));
            }
            let subject = match &compiled.subject {
                None => crate::rules::TENANT_SUBJECT.to_owned(),
                Some(program) => match program.execute(&context) {
                    Ok(cel::Value::String(s)) => s.to_string(),
                    Ok(other) => {
                        let message = Message::new("common.custom-wrong-type")
                            .arg("title", rule.title.as_str())
                            .arg("got", type_name(&other));
                        return evaluation(
                            crate::rules::TENANT_SUBJECT.to_owned(),
                            Outcome::unknown(message),
                        );
                    }
                    Err(error) => {
                        let message = Message::new("common.custom-error")
                            .arg("title", rule.title.as_str())
                            .arg("error", error.to_string());
                        return evaluation(
                            crate::rules::TENANT_SUBJECT.to_owned(),
                            Outcome::unknown(message),
                        );
                    }
                },
            };
            let outcome = match compiled.condition.execute(&context) {
                Ok(cel::Value::Bool(true)) => Outcome::fail(
                    rule.severity,
                    Message::new("common.custom-fail")
                        .arg("title", rule.title.as_str())
                        .arg("subject", subject.as_str()),
                    json!({ "custom_rule": rule.id, "condition": rule.condition }),
                ),
                Ok(cel::Value::Bool(false)) => Outcome::Pass,
                Ok(other) => Outcome::unknown(
                    Message::new("common.custom-wrong-type")
                        .arg("title", rule.title.as_str())
                        .arg("got", type_name(&other)),
                ),
                Err(error) => Outcome::unknown(
                    Message::new("common.custom-error")
                        .arg("title", rule.title.as_str())
                        .arg("error", error.to_string()),
                ),
            };
            evaluation(subject, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests;
