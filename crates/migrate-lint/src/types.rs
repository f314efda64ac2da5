//! Column types and defaults as far as rewrites go: which `ALTER COLUMN … TYPE` is
//! binary-coercible, which default is volatile (evaluated for every row).

use std::fmt;

use squawk_syntax::ast::{self, AstNode};

use super::syntax::name_key;

/// Functions PostgreSQL marks VOLATILE that show up in defaults: a default calling one is
/// evaluated per row, so adding the column rewrites the table.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "gen_random_bytes",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "currval",
    "lastval",
    "txid_current",
    "pg_current_xact_id",
    "setseed",
];

/// Functions known to be STABLE or IMMUTABLE that show up in defaults: evaluated once when the
/// column is added (PostgreSQL 11+), no rewrite. A function on neither list is unknown: the
/// finding is a warning (it may be volatile), never a deny.
const NON_VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "to_timestamp",
    "to_date",
    "to_char",
    "to_number",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "date_trunc",
    "date_part",
    "extract",
    "timezone",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "concat",
    "concat_ws",
    "format",
    "replace",
    "substring",
    "trim",
    "md5",
    "encode",
    "decode",
    "abs",
    "round",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "array_fill",
    "current_setting",
    "current_database",
    "current_schema",
    "uuid_nil",
    "inet_client_addr",
];

/// Why adding this column rewrites the table (PostgreSQL 11+), and whether the lint is sure.
pub(super) fn default_rewrite(add: &ast::AddColumn) -> Option<(String, bool)> {
    for constraint in add.constraints() {
        match constraint {
            ast::Constraint::DefaultConstraint(d) => {
                let expr = d.expr()?;
                let mut unknown = None;
                for call in expr.syntax().descendants().filter_map(ast::CallExpr::cast) {
                    let name = call
                        .expr()
                        .map(|e| name_key(e.syntax()))
                        .or_else(|| call.syntax().first_token().map(|t| t.text().to_lowercase()))
                        .unwrap_or_default();
                    if VOLATILE_FUNCTIONS.contains(&name.as_str()) {
                        return Some((
                            format!("{name}() is volatile: evaluated for every row"),
                            true,
                        ));
                    }
                    if !NON_VOLATILE_FUNCTIONS.contains(&name.as_str()) {
                        unknown.get_or_insert(name);
                    }
                }
                if let Some(name) = unknown {
                    return Some((
                        format!(
                            "the lint does not know whether {name}() is volatile; if it is, the table is rewritten"
                        ),
                        false,
                    ));
                }
            }
            ast::Constraint::GeneratedConstraint(g) => {
                let text = g.syntax().text().to_string().to_lowercase();
                if text.contains("identity") {
                    return Some((
                        "an identity column gets one value per row".to_string(),
                        true,
                    ));
                }
                if text.contains("stored") {
                    return Some((
                        "a stored generated column is computed for every row".to_string(),
                        true,
                    ));
                }
                // VIRTUAL (PostgreSQL 18): computed on read, nothing is written.
            }
            _ => {}
        }
    }
    None
}

/// A column type as far as rewrites go: canonical name, type modifiers, array or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SqlType {
    name: String,
    mods: Vec<u32>,
    array: bool,
}

impl SqlType {
    pub(super) fn parse(text: &str) -> Self {
        let mut t = text
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut array = false;
        if let Some(i) = t.find('[') {
            array = true;
            t.truncate(i);
        }
        if let Some(stripped) = t.strip_suffix(" array") {
            array = true;
            t = stripped.to_string();
        }
        let mut mods = Vec::new();
        if let (Some(a), Some(b)) = (t.find('('), t.find(')'))
            && a < b
        {
            mods = t[a + 1..b]
                .split(',')
                .filter_map(|m| m.trim().parse().ok())
                .collect();
            t = format!("{} {}", &t[..a], &t[b + 1..]);
        }
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let t = t.trim_start_matches("pg_catalog.").trim_matches('"');
        let name = match t {
            "character varying" | "varchar" => "varchar",
            "character" | "char" | "bpchar" => "bpchar",
            "int" | "integer" | "int4" => "int4",
            "smallint" | "int2" => "int2",
            "bigint" | "int8" => "int8",
            "decimal" | "numeric" => "numeric",
            "timestamp" | "timestamp without time zone" => "timestamp",
            "timestamptz" | "timestamp with time zone" => "timestamptz",
            "time" | "time without time zone" => "time",
            "timetz" | "time with time zone" => "timetz",
            "bit varying" | "varbit" => "varbit",
            "double precision" | "float8" => "float8",
            "real" | "float4" => "float4",
            "boolean" | "bool" => "bool",
            "serial" | "serial4" => "serial",
            "bigserial" | "serial8" => "bigserial",
            "smallserial" | "serial2" => "smallserial",
            other => other,
        };
        Self {
            name: name.to_string(),
            mods,
            array,
        }
    }

    pub(super) fn is_serial(&self) -> bool {
        matches!(self.name.as_str(), "serial" | "bigserial" | "smallserial")
    }

    /// Whether `ALTER COLUMN … TYPE to` keeps the table and its indexes as they are
    /// (binary-coercible, or a widened type modifier). Each case was checked on PostgreSQL:
    /// `pg_relation_filenode` of the table and of an index on the column unchanged.
    pub(super) fn binary_coercible_to(&self, to: &SqlType) -> bool {
        if self == to {
            return true;
        }
        if self.array || to.array {
            return false;
        }
        // A length or precision limit that only grows (or goes away).
        let widened = |from: &[u32], to: &[u32], unlimited: u32| match (from.first(), to.first()) {
            (_, None) => true,
            (Some(a), Some(b)) => b >= a,
            (None, Some(b)) => *b >= unlimited,
        };
        match (self.name.as_str(), to.name.as_str()) {
            ("varchar", "varchar") | ("varbit", "varbit") => {
                widened(&self.mods, &to.mods, u32::MAX)
            }
            ("varchar", "text") | ("cidr", "inet") | ("xml", "text") => true,
            ("text", "varchar") => to.mods.is_empty(),
            ("numeric", "numeric") => match (self.mods.as_slice(), to.mods.as_slice()) {
                (_, []) => true,
                ([p, rest @ ..], [p2, rest2 @ ..]) => {
                    p2 >= p && rest.first().unwrap_or(&0) == rest2.first().unwrap_or(&0)
                }
                _ => false,
            },
            (a, b)
                if a == b
                    && matches!(
                        a,
                        "timestamp" | "timestamptz" | "time" | "timetz" | "interval"
                    ) =>
            {
                widened(&self.mods, &to.mods, 6)
            }
            _ => false,
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.mods.is_empty() {
            let mods: Vec<String> = self.mods.iter().map(u32::to_string).collect();
            write!(f, "({})", mods.join(","))?;
        }
        if self.array {
            f.write_str("[]")?;
        }
        Ok(())
    }
}
