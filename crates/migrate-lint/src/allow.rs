//! `-- lint:allow <rule>: <reason>` comments: which rules a file allows, and why.

use std::collections::BTreeMap;

use squawk_syntax::{SyntaxKind, SyntaxNode};

use super::rules::{INVALID_ALLOW, RULES, rule};
use super::syntax::Lines;
use crate::file::Hit;

/// `-- lint:allow <rule>: <reason>` comments: rule → reason. A comment without a reason, or
/// naming an unknown rule, is an `invalid-allow` hit (always an error); so is squawk's own
/// `-- squawk-ignore`, which squawk would honour without a reason.
pub(super) fn read_allows(
    root: &SyntaxNode,
    lines: &Lines,
    hits: &mut Vec<Hit>,
) -> BTreeMap<&'static str, String> {
    let mut allows = BTreeMap::new();
    for token in root
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == SyntaxKind::COMMENT)
    {
        let Some(comment) = token.text().strip_prefix("--").map(str::trim) else {
            continue;
        };
        let line = lines.line(token.text_range().start());
        let mut invalid = |message: String| {
            hits.push(Hit {
                line,
                rule: INVALID_ALLOW,
                message,
                uncertain: false,
            })
        };
        if comment.starts_with("squawk-ignore") {
            invalid(
                "squawk's ignore comments are not read here (they carry no reason); write `-- lint:allow <rule>: <reason>`"
                    .to_string(),
            );
            continue;
        }
        let Some(rest) = comment.strip_prefix("lint:allow") else {
            continue;
        };
        let (id, reason) = rest.split_once(':').unwrap_or((rest, ""));
        let (id, reason) = (id.trim(), reason.trim());
        match rule(id) {
            None => invalid(format!(
                "`lint:allow` names unknown rule {id:?}; write `-- lint:allow <rule>: <reason>` with one of: {}",
                RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
            )),
            Some(_) if reason.is_empty() => invalid(format!(
                "`lint:allow {id}` without a reason; write `-- lint:allow {id}: <why it is safe here>`"
            )),
            Some(info) => {
                allows.insert(info.id, reason.to_string());
            }
        }
    }
    allows
}
