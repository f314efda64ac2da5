//! The lint's result: findings, with their level or allow reason, and the report of a set.

use std::fmt;

use super::rules::{Level, rule};

/// One finding. `level` is `Deny` or `Warn`; `allowed` holds the reason of the file's
/// `-- lint:allow` comment when one covers it (it then neither warns nor fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub rule: &'static str,
    pub level: Level,
    pub message: String,
    pub allowed: Option<String>,
}

impl Finding {
    /// `<prefix><file>:<line>: <rule>: <message> (<why>; <fix>)`, one line.
    pub fn render(&self, prefix: &str) -> String {
        let mut s = format!(
            "{prefix}{}:{}: {}: {}",
            self.file, self.line, self.rule, self.message
        );
        if let Some(info) = rule(self.rule) {
            s.push_str(&format!(" ({}; instead: {})", info.why, info.fix));
        }
        if let Some(reason) = &self.allowed {
            s.push_str(&format!(" [allowed: {reason}]"));
        }
        s
    }

    pub fn is_deny(&self) -> bool {
        self.allowed.is_none() && self.level == Level::Deny
    }

    pub fn is_warn(&self) -> bool {
        self.allowed.is_none() && self.level == Level::Warn
    }

    /// `deny`, `warn` or `allowed`.
    pub fn status(&self) -> &'static str {
        if self.allowed.is_some() {
            "allowed"
        } else {
            self.level.as_str()
        }
    }
}

/// The lint of a set: findings in file, then line order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: usize,
    /// Statements read, over all files.
    pub statements: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn denies(&self) -> usize {
        self.findings.iter().filter(|f| f.is_deny()).count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.is_warn()).count()
    }

    pub fn allowed(&self) -> usize {
        self.findings.iter().filter(|f| f.allowed.is_some()).count()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} deny, {} warn, {} allowed in {} migration file(s)",
            self.denies(),
            self.warnings(),
            self.allowed(),
            self.files
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{:<7} {}", finding.status(), finding.render(""))?;
        }
        write!(f, "{}", self.summary())
    }
}
