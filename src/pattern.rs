//! Rule patterns (DESIGN §5): a pattern must match a whole label or inbox, as if anchored as
//! `^(?:pattern)$`, and must be a pattern on its own: `Lun)|(?:xx` is refused, although once
//! anchored it would parse (as `^(?:Lun)|(?:xx)$`) and match `Lunch`.
//!
//! Most patterns are a literal or a `|` list of literals (`Break|Lunch`, an inbox id); those
//! are compared as strings. Compiling a regex costs tens of microseconds, so a generated file
//! of 30,000 per-inbox rules would take seconds to load as regexes and takes milliseconds as
//! literals.

use regex::Regex;
use regex_syntax::ast::{self, Ast};

#[derive(Clone, Debug)]
pub enum Matcher {
    /// The whole text equals one of these.
    Literals(Vec<String>),
    /// `^(?:pattern)$`.
    Regex(Regex),
}

/// Why a rule's pattern is not one. The message is the parser's or the compiler's last line
/// (`unclosed group`), without the pattern it quotes; the whole message is the source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PatternError {
    /// Not a pattern on its own (boxed: the parser's error holds the pattern and spans).
    #[error("{}", last_line(.0))]
    Parse(#[source] Box<regex_syntax::Error>),
    /// A pattern, but one that does not compile (too big, say).
    #[error("{}", last_line(.0))]
    Compile(#[source] regex::Error),
}

/// The last line of a parser's or compiler's message, which quotes the pattern above it.
fn last_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

impl Matcher {
    /// Parses `pattern` alone, then builds its matcher.
    pub fn new(pattern: &str) -> Result<Matcher, PatternError> {
        if let Some(lits) = literal_alternatives(pattern) {
            return Ok(Matcher::Literals(lits));
        }
        regex_syntax::Parser::new()
            .parse(pattern)
            .map_err(|e| PatternError::Parse(Box::new(e)))?;
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Matcher::Regex)
            .map_err(PatternError::Compile)
    }

    pub fn is_match(&self, text: &str) -> bool {
        match self {
            Matcher::Literals(l) => l.iter().any(|x| x == text),
            Matcher::Regex(r) => r.is_match(text),
        }
    }
}

/// `a|bc|d-e` → ["a", "bc", "d-e"] when every alternative is plain (or escaped) characters;
/// `None` for anything with classes, repetition, groups, flags, anchors or an empty branch.
fn literal_alternatives(pattern: &str) -> Option<Vec<String>> {
    fn literal(a: &Ast) -> Option<String> {
        match a {
            Ast::Literal(l) => Some(l.c.to_string()),
            Ast::Concat(c) => c.asts.iter().map(literal).collect(),
            _ => None,
        }
    }
    let ast = ast::parse::Parser::new().parse(pattern).ok()?;
    match &ast {
        Ast::Alternation(alt) => alt.asts.iter().map(literal).collect(),
        one => literal(one).map(|s| vec![s]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_regexes_match_whole_texts_only() {
        for (p, yes, no) in [
            ("LOGGED_IN", "LOGGED_IN", "LOGGED_IN_X"),
            ("Break|Lunch", "Lunch", "Lunchtime"),
            (r"a\.b|c\|d", "c|d", "axb"),
            (
                "AvailableFor:.*|Unavailable",
                "AvailableFor:VOICE",
                "XUnavailable",
            ),
            ("(?i)lunch", "LUNCH", "LUNCHES"),
            ("a|", "", "b"),
        ] {
            let m = Matcher::new(p).unwrap();
            assert!(m.is_match(yes), "{p} ~ {yes}");
            assert!(!m.is_match(no), "{p} !~ {no}");
        }
        assert!(matches!(
            Matcher::new("Break|Lunch").unwrap(),
            Matcher::Literals(_)
        ));
        assert!(matches!(Matcher::new("a|").unwrap(), Matcher::Regex(_)));
    }

    #[test]
    fn a_pattern_must_parse_on_its_own() {
        let e = Matcher::new("Lun)|(?:xx").unwrap_err().to_string();
        assert!(e.contains("unopened group"), "{e}");
        assert!(Matcher::new("(")
            .unwrap_err()
            .to_string()
            .contains("unclosed group"));
        // Too big to compile: the compiler's message, short.
        let e = Matcher::new("(?:a{1000}){1000}").unwrap_err();
        assert!(matches!(e, PatternError::Compile(_)), "{e:?}");
        let e = e.to_string();
        assert!(e.len() < 200 && e.contains("size limit"), "{e}");
    }
}
