//! The one duration grammar: configuration values (`"10s"`, `APP_…`, `--timeout`), migration
//! header settings (`-- lock_timeout: 5s`) and the lint's reading of `SET lock_timeout …`.
//!
//! ```text
//! duration = number [unit]          spaces allowed around and between the two
//! number   = 1*DIGIT                (the whole duration must fit in u64 milliseconds)
//! unit     = "ms" | "s" | "min" | "m" | "h" | "d"      (case-sensitive, as PostgreSQL's)
//! ```
//!
//! It is the union of what each place accepted before: configuration said `m` for minutes,
//! headers (like PostgreSQL) `min`; both mean minutes everywhere now. Headers took `d` and a
//! bare number, configuration spaces around the unit: all are read everywhere, but for the
//! bare number.
//! A number without a unit is what PostgreSQL makes of it for `lock_timeout` and
//! `statement_timeout`, milliseconds, where the value is PostgreSQL's ([`Bare::Millis`]:
//! headers, `SET`); configuration refuses it ([`Bare::Refused`]), since "10" would be 10 ms
//! there, never the 10 s a reader expects.
//!
//! A value sent to PostgreSQL is rendered by [`Span::postgres`]: number and unit with no space,
//! minutes as `min` (PostgreSQL refuses `m`), a bare number as written.
//!
//! Used by `build.rs` too (through this crate): `std` only.

use std::fmt;
use std::time::Duration;

/// The largest `lock_timeout` / `statement_timeout` PostgreSQL takes: `INT_MAX` milliseconds
/// (about 24.8 days).
pub const POSTGRES_MAX_MILLIS: u128 = i32::MAX as u128;

/// A unit of the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
}

/// Spellings, as written; the first of each unit is how PostgreSQL spells it.
const SPELLINGS: [(&str, Unit); 6] = [
    ("ms", Unit::Millis),
    ("s", Unit::Seconds),
    ("min", Unit::Minutes),
    ("m", Unit::Minutes),
    ("h", Unit::Hours),
    ("d", Unit::Days),
];

/// Said in errors.
const UNITS: &str = "ms, s, m or min, h, d";

impl Unit {
    fn millis(self) -> u64 {
        match self {
            Unit::Millis => 1,
            Unit::Seconds => 1_000,
            Unit::Minutes => 60_000,
            Unit::Hours => 3_600_000,
            Unit::Days => 86_400_000,
        }
    }

    /// PostgreSQL's spelling (`min`, never `m`).
    pub fn postgres(self) -> &'static str {
        SPELLINGS
            .iter()
            .find(|(_, unit)| *unit == self)
            .map_or("", |(spelling, _)| spelling)
    }
}

/// What a number without a unit means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// An error (configuration).
    Refused,
    /// Milliseconds, PostgreSQL's reading for `lock_timeout` and `statement_timeout`.
    Millis,
}

/// A duration as written: its number and its unit (none: [`Bare::Millis`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    amount: u64,
    unit: Option<Unit>,
}

impl Span {
    /// Reads `text` by the grammar above. The error quotes the text and says what is wrong.
    pub fn parse(text: &str, bare: Bare) -> Result<Self, String> {
        let s = text.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, rest) = s.split_at(split);
        let amount: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration such as \"10s\""))?;
        let unit = match (rest.trim_start(), bare) {
            ("", Bare::Millis) => None,
            ("", Bare::Refused) => {
                return Err(format!("{s:?} has no unit (use {UNITS}, e.g. \"10s\")"));
            }
            (word, _) => Some(
                SPELLINGS
                    .iter()
                    .find(|(spelling, _)| *spelling == word)
                    .map(|(_, unit)| *unit)
                    .ok_or_else(|| format!("{s:?}: unknown unit {word:?} (use {UNITS})"))?,
            ),
        };
        let span = Self { amount, unit };
        span.millis()
            .ok_or_else(|| format!("{s:?} is too long a duration"))?;
        Ok(span)
    }

    fn millis(self) -> Option<u64> {
        self.amount.checked_mul(self.unit.map_or(1, Unit::millis))
    }

    pub fn duration(self) -> Duration {
        // `parse` refused a span whose milliseconds do not fit.
        Duration::from_millis(self.millis().unwrap_or(u64::MAX))
    }

    pub fn is_zero(self) -> bool {
        self.amount == 0
    }

    /// The text for `SET <setting> = '…'`: number and PostgreSQL's unit, no space between.
    pub fn postgres(self) -> String {
        format!("{}{}", self.amount, self.unit.map_or("", Unit::postgres))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.postgres())
    }
}

/// A configuration duration: a unit is required.
pub fn parse(text: &str) -> Result<Duration, String> {
    Span::parse(text, Bare::Refused).map(Span::duration)
}

/// A configuration duration as `server config` prints it: whole seconds as `"10s"`, else
/// milliseconds (`"250ms"`), the grammar's finest unit.
pub fn render(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_form_accepted_before_is_accepted() {
        // Configuration: ms, s, m, h, spaces around and between.
        for (text, secs) in [
            ("250ms", 0.25),
            ("10s", 10.0),
            ("5m", 300.0),
            ("1h", 3600.0),
            (" 10 s ", 10.0),
            ("0s", 0.0),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs_f64(secs)), "{text}");
        }
        // Headers: bare (milliseconds), ms, s, min, h, d.
        for (text, ms) in [
            ("500", 500),
            ("0", 0),
            ("30s", 30_000),
            ("10min", 600_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
        ] {
            let span = Span::parse(text, Bare::Millis).expect(text);
            assert_eq!(span.duration(), Duration::from_millis(ms), "{text}");
            assert_eq!(span.postgres(), text, "rendered as written");
        }
    }

    #[test]
    fn minutes_are_min_for_postgresql() {
        let span = Span::parse("5m", Bare::Millis).expect("m is minutes");
        assert_eq!(span.postgres(), "5min");
        assert_eq!(span, Span::parse("5 min", Bare::Millis).expect("min"));
        assert_eq!(
            Span::parse(" 7  s", Bare::Millis)
                .expect("spaces")
                .postgres(),
            "7s"
        );
    }

    #[test]
    fn refusals_say_why() {
        assert!(parse("10").expect_err("bare").contains("has no unit"));
        assert!(
            parse("ten s")
                .expect_err("words")
                .contains("is not a duration")
        );
        assert!(
            parse("3 days")
                .expect_err("days")
                .contains("unknown unit \"days\"")
        );
        assert!(parse("10S").expect_err("case").contains("unknown unit"));
        for text in [
            "",
            "s",
            "-1s",
            "+1s",
            "1.5s",
            "1e3ms",
            "10s5",
            "1us",
            "99999999999999999999s",
        ] {
            assert!(Span::parse(text, Bare::Millis).is_err(), "{text}");
        }
        assert!(
            parse("18446744073709551615h")
                .expect_err("overflow")
                .contains("too long")
        );
    }

    #[test]
    fn config_rendering_reads_back() {
        assert_eq!(render(Duration::from_secs(300)), "300s");
        assert_eq!(render(Duration::from_millis(250)), "250ms");
        assert_eq!(render(Duration::from_millis(1500)), "1500ms");
    }

    fn unit() -> impl Strategy<Value = &'static str> {
        prop::sample::select(SPELLINGS.iter().map(|(s, _)| *s).collect::<Vec<_>>())
    }

    proptest! {
        /// Whatever parses renders for PostgreSQL as digits and one of its units, and reads
        /// back as the same duration.
        #[test]
        fn postgres_rendering_reads_back(n in 0u64..10_000_000, u in unit(), pad in "[ ]{0,2}") {
            let text = format!("{pad}{n}{pad}{u}{pad}");
            let span = Span::parse(&text, Bare::Millis).expect("valid");
            let shown = span.postgres();
            prop_assert!(["ms", "s", "min", "h", "d"]
                .contains(&shown.trim_start_matches(|c: char| c.is_ascii_digit())));
            prop_assert_eq!(Span::parse(&shown, Bare::Millis).expect("reads back"), span);
            prop_assert_eq!(parse(&text).expect("config reads it"), span.duration());
        }

        #[test]
        fn config_rendering_round_trips(millis in 0u64..u64::MAX / 2) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(parse(&render(d)), Ok(d));
        }

        #[test]
        fn never_panics(text in "\\PC{0,12}") {
            let _ = Span::parse(&text, Bare::Millis);
            let _ = parse(&text);
        }

        /// A zero of any unit is zero; a non-zero number never is.
        #[test]
        fn zero_is_the_number(n in 0u64..1000, u in unit()) {
            let span = Span::parse(&format!("{n}{u}"), Bare::Millis).expect("valid");
            prop_assert_eq!(span.is_zero(), n == 0);
        }
    }
}
